/**
 * The reward pool's calls into its threads (./reward-pool.ts says what a call, a task and each
 * outcome are): a reward's calls packed into at most `threads` piscina tasks, a failing call
 * split off and retried alone, the kill timer for synchronous hangs, and the coded reply of a
 * thread that was killed or died. RewardPool builds the calls (Entry) and reads their fates.
 */
import type { Piscina } from 'piscina';
import { GrpoError } from '../shared/errors.js';
import type { ErrorCode } from '../shared/errors.js';
import type { ProtocolLogger, RewardErrorInfo } from '../shared/protocol.js';
import { MAX_TASK_CALLS, newProgress, readProgress } from './reward-progress.js';
import type { CallFailure, CallReply, CallRequest, DescribeReply, RewardCall, RewardRequest } from './reward-thread.js';

export interface ThreadCallOptions {
  threads: number; // tasks per reward at most (config reward_threads)
  timeoutMs: number; // per call, ms
  retries: number; // extra attempts per failing call
  graceMs: number; // after timeoutMs, until a call that has not answered gets its thread terminated
  log: ProtocolLogger;
  checkOpen: () => void; // throws GRPO_ERR_REWARD_POOL_CLOSED once the pool is closed
}

export function asErrorCode(code: string): ErrorCode {
  return (/^GRPO_ERR_[A-Z0-9_]+$/.test(code) ? code : 'GRPO_ERR_REWARD_THREAD') as ErrorCode;
}

/** Counters of a pool's thread calls (RewardPool.stats()). */
export interface RewardPoolStats {
  calls: number; // attempts submitted
  failedAttempts: number;
  terminatedThreads: number; // threads killed for a hung call
}

/** `list` cut into at most `parts` contiguous chunks of near-equal size (more where a chunk would exceed MAX_TASK_CALLS). */
export function chunks<T>(list: readonly T[], parts: number): T[][] {
  const n = Math.min(Math.max(parts, Math.ceil(list.length / MAX_TASK_CALLS)), list.length);
  const out: T[][] = [];
  for (let c = 0, start = 0; c < n; c++) {
    const end = start + Math.ceil((list.length - start) / (n - c));
    out.push(list.slice(start, end));
    start = end;
  }
  return out;
}

/** How a group's scoring goes: the failed attempts a retry fixed, and the error that failed it (then no more calls are made for it). */
export interface Fate {
  errors: RewardErrorInfo[];
  failed: GrpoError | null;
}

/** One call of a reward: the completions it scores, where its scores go, how it is named. */
export interface Entry {
  call: RewardCall;
  fate: Fate;
  where: { item: number } | { items: number[] };
  logFields: Record<string, unknown>;
  set(values: (number | null)[]): void;
}

/** Runs calls of one reward at a time on the pool's threads; counts attempts, failures and kills. */
export class ThreadCalls {
  readonly counters: RewardPoolStats = { calls: 0, failedAttempts: 0, terminatedThreads: 0 };

  constructor(
    private readonly pool: Piscina<RewardRequest, DescribeReply | CallReply>,
    private readonly o: ThreadCallOptions,
  ) {}

  /** Every entry of reward `reward`, in at most `threads` tasks; failures land in the entries' fates. */
  async run(reward: string, entries: readonly Entry[]): Promise<void> {
    await Promise.all(chunks(entries, this.o.threads).map((chunk) => this.callEach(reward, chunk)));
  }

  /**
   * Calls of one reward in one thread task. When call k fails, that failure is k's first attempt:
   * k goes on alone through callWithRetries, exactly as if it had been called alone; the scores
   * before it are kept (made again, as one task, when the thread was killed) and the calls after
   * it go on as one task again. Calls of a group that has failed are not made.
   */
  private async callEach(reward: string, entries: readonly Entry[]): Promise<void> {
    const live = entries.filter((e) => e.fate.failed === null);
    if (live.length === 0) return;
    if (live.length === 1) return this.callWithRetries(reward, live[0]);
    const reply = await this.callOnce(
      reward,
      live.map((e) => e.call),
    );
    if (reply.ok) {
      live.forEach((e, k) => e.set(reply.values[k]));
      return;
    }
    const k = Math.min(reply.item ?? 0, live.length - 1);
    const kept = (reply.values ?? []).slice(0, k);
    kept.forEach((values, j) => live[j].set(values));
    await this.callEach(reward, live.slice(kept.length, k));
    await this.callWithRetries(reward, live[k], reply);
    await this.callEach(reward, live.slice(k + 1));
  }

  /**
   * One call with retries. `failed`: the reply of a first attempt already made (by callEach).
   * A call that fails every attempt fails its group (entry.fate), logged.
   */
  private async callWithRetries(reward: string, e: Entry, failed?: CallFailure): Promise<void> {
    const attempts = this.o.retries + 1;
    let last: { code: string; message: string } | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (e.fate.failed) return; // another call of this group gave up: stop spending threads
      const reply = attempt === 1 && failed ? failed : await this.callOnce(reward, [e.call]);
      if (reply.ok) {
        e.set(reply.values[0]);
        return;
      }
      this.counters.failedAttempts++;
      last = { code: reply.code, message: reply.message };
      e.fate.errors.push({ reward, code: reply.code, message: reply.message });
      this.o.log('warn', 'reward_error', {
        code: reply.code,
        reward,
        ...e.logFields,
        ...e.where,
        attempt,
        attempts,
        ms: Math.round(reply.ms),
        message: reply.message,
      });
    }
    const { code, message } = last as { code: string; message: string };
    const on = 'item' in e.where ? `item ${e.where.item}` : `the group of items ${e.where.items.join(',')}`;
    const gaveUp = new GrpoError(
      'GRPO_ERR_REWARD_FAILED',
      `reward ${reward} failed on ${on} in all ${attempts} attempts (reward_retries ${this.o.retries}); last error ${code}: ${message}`,
      { cause: new GrpoError(asErrorCode(code), message) },
    );
    e.fate.failed ??= gaveUp;
    this.o.log('error', 'reward_failed', { code: gaveUp.code, reward, ...e.logFields, ...e.where, attempts, last: code, message });
  }

  /**
   * One thread task: the thread's reply, or a coded failure when the thread was killed or died
   * (`item`: the call it was running). The kill timer first fires `timeoutMs + graceMs` after
   * submission, then follows the running call's start (a task waiting for a thread is not timed).
   */
  private async callOnce(reward: string, calls: RewardCall[]): Promise<CallReply> {
    this.o.checkOpen();
    this.counters.calls++;
    const abort = new AbortController();
    const limitMs = this.o.timeoutMs + this.o.graceMs;
    const progress = newProgress();
    let running: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const check = (): void => {
      const p = readProgress(progress);
      const left = p === null ? limitMs : p.startedMs + limitMs - Date.now();
      if (p === null || left > 0) {
        timer = setTimeout(check, left);
        return;
      }
      running = p.index;
      abort.abort();
    };
    timer = setTimeout(check, limitMs);
    const req: CallRequest = { op: 'call', reward, calls, timeoutMs: this.o.timeoutMs, progress: progress.buffer as SharedArrayBuffer };
    try {
      return (await this.pool.run(req, { signal: abort.signal })) as CallReply;
    } catch (err) {
      this.o.checkOpen();
      running ??= readProgress(progress)?.index;
      if (abort.signal.aborted) {
        this.counters.terminatedThreads++;
        return {
          ok: false,
          code: 'GRPO_ERR_REWARD_TIMEOUT',
          message: `reward ${reward} was still running ${limitMs} ms after it started (timeout ${this.o.timeoutMs} ms; a synchronous hang?); its thread was terminated and replaced`,
          ms: limitMs,
          ...(running === undefined ? {} : { item: running }),
        };
      }
      const message = err instanceof Error ? err.message : String(err);
      return {
        ok: false,
        code: 'GRPO_ERR_REWARD_THREAD',
        message: `reward ${reward}: its thread failed: ${message}`,
        ms: 0,
        ...(running === undefined ? {} : { item: running }),
      };
    } finally {
      clearTimeout(timer);
    }
  }
}
