/**
 * RewardPool: a task's reward functions run in a piscina thread pool, off the sampling thread,
 * with a per-call timeout and bounded retries.
 *
 * One piscina task = one reward function on one completion, so a timeout names exactly the
 * function and completion that caused it. A call ends in one of:
 *   - a finite number (or null, "not applicable"): the reward;
 *   - GRPO_ERR_REWARD_THREW / _NAN / _TIMEOUT, decided in the thread (./reward-thread.ts);
 *   - GRPO_ERR_REWARD_TIMEOUT decided here: a synchronous function that never returns cannot be
 *     interrupted in its own thread, so the pool arms a kill timer when the thread reports the
 *     call started and, `timeoutMs + graceMs` later, aborts the piscina task; piscina then
 *     terminates the thread and starts a replacement;
 *   - GRPO_ERR_REWARD_THREAD: the thread died for another reason (e.g. the reward called
 *     process.exit or ran out of memory).
 * Every failed attempt is logged as one structured line and retried up to `retries` times; a call
 * that still fails makes score() throw GRPO_ERR_REWARD_FAILED naming the reward and its last
 * error. A failure is never turned into a reward of 0, and NaN is never a reward.
 *
 * Concurrency: piscina runs at most one abortable task per thread (killing a thread must not take
 * other work with it), so each thread runs one reward call at a time, async or not. Slow async
 * rewards (a remote judge) overlap across threads: raise `threads` (reward_threads) for them.
 *
 * Weights: the pool runs only the rewards whose resolved weight (config reward_weights over the
 * task defaults) is non-zero, and reports the raw score of each by name; ready() gives the
 * resolved weights for whoever combines them (the learner, with grpo/rewards.ts combineRewards).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { GrpoError } from '../shared/errors.js';
import type { ErrorCode } from '../shared/errors.js';
import { stderrLogger } from '../shared/protocol.js';
import type { ProtocolLogger, RewardErrorInfo } from '../shared/protocol.js';
import type {
  CallReply,
  CallRequest,
  CallStarted,
  DescribeReply,
  RewardRequest,
  RewardSpec,
  RewardThreadData,
} from './reward-thread.js';

export type { RewardSpec } from './reward-thread.js';

export interface RewardPoolOptions {
  task: string; // built-in task name or path to a task module
  taskSeed: number;
  taskOptions?: Record<string, unknown>;
  rewardWeights?: Record<string, number>; // config reward_weights
  threads?: number; // config reward_threads
  timeoutMs?: number; // per reward call, ms (config reward_timeout_ms)
  retries?: number; // extra attempts per failing call (config reward_retries)
  /** How long after timeoutMs a call that has not answered gets its thread terminated, ms. */
  graceMs?: number;
  log?: ProtocolLogger;
}

const DEFAULTS = {
  taskOptions: {},
  rewardWeights: {},
  threads: 1,
  timeoutMs: 10_000, // 10 s per call
  retries: 2,
  graceMs: 500, // 0.5 s: room for the thread's own timeout answer to arrive first
  log: stderrLogger,
} satisfies Omit<Required<RewardPoolOptions>, 'task' | 'taskSeed'>;

type ResolvedOptions = Required<RewardPoolOptions>;

export interface ScoreItem {
  prompt: string;
  completion: string;
  meta: unknown; // JSON-like: crosses the thread boundary by structured clone
}

export interface ScoreResult {
  /** Per item, the raw score of every active reward function by name (task order). */
  rewards: Record<string, number | null>[];
  /** Failed attempts that a retry then fixed (informative; GroupRollout.rewardErrors). */
  errors: RewardErrorInfo[];
}

export interface RewardPoolInfo {
  taskName: string;
  /** Active rewards (weight != 0) with their resolved weights, in task order. */
  rewards: RewardSpec[];
}

export interface RewardPoolStats {
  calls: number; // attempts submitted
  failedAttempts: number;
  terminatedThreads: number; // threads killed for a hung call
}

/**
 * The compiled worker file: next to this module once built; when this module runs from src/
 * (vitest executes the .ts), the compiled file in dist/, since piscina threads need JavaScript.
 */
export function rewardThreadFile(): string {
  const here = fileURLToPath(import.meta.url);
  const file = here.endsWith('.ts')
    ? resolve(dirname(here), '../../dist/rollout-worker/reward-thread.js')
    : join(dirname(here), 'reward-thread.js');
  if (!existsSync(file)) {
    throw new GrpoError('GRPO_ERR_REWARD_THREAD_MISSING', `reward thread file ${file} does not exist; build the project (npm run build)`);
  }
  return file;
}

function isCallStarted(m: unknown): m is CallStarted {
  return typeof m === 'object' && m !== null && typeof (m as CallStarted).rewardCallStarted === 'number';
}

function asErrorCode(code: string): ErrorCode {
  return (/^GRPO_ERR_[A-Z0-9_]+$/.test(code) ? code : 'GRPO_ERR_REWARD_THREAD') as ErrorCode;
}

function checkOptions(o: ResolvedOptions): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_REWARD_POOL_OPTIONS', msg);
  };
  if (typeof o.task !== 'string' || o.task === '') fail(`task is ${JSON.stringify(o.task)}; give a built-in task name or a module path`);
  if (!Number.isFinite(o.taskSeed)) fail(`taskSeed is ${o.taskSeed}; it must be a finite number`);
  for (const key of ['threads', 'timeoutMs'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) fail(`${key} is ${o[key]}; it must be an integer >= 1`);
  }
  for (const key of ['retries', 'graceMs'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 0) fail(`${key} is ${o[key]}; it must be an integer >= 0`);
  }
}

export class RewardPool {
  private readonly opts: ResolvedOptions;
  private readonly pool: Piscina<RewardRequest, DescribeReply | CallReply>;
  private readonly info: Promise<RewardPoolInfo>;
  /** Arms the kill timer of a submitted call when its thread reports it started, by callId. */
  private readonly armers = new Map<number, () => void>();
  private readonly counters: RewardPoolStats = { calls: 0, failedAttempts: 0, terminatedThreads: 0 };
  private nextCallId = 1;
  private closed = false;

  constructor(options: RewardPoolOptions) {
    // an option given as undefined (e.g. mapped from an unset config key) keeps its default
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.opts = { ...DEFAULTS, ...given } as ResolvedOptions;
    checkOptions(this.opts);
    const workerData: RewardThreadData = {
      task: this.opts.task,
      taskSeed: this.opts.taskSeed,
      taskOptions: this.opts.taskOptions,
      rewardWeights: this.opts.rewardWeights,
    };
    this.pool = new Piscina({
      filename: rewardThreadFile(),
      minThreads: this.opts.threads,
      maxThreads: this.opts.threads,
      // 'sync' atomics park an idle thread in Atomics.wait, which would freeze the timers of
      // abandoned (timed-out) async rewards and delay their late errors to the next call
      atomics: 'disabled',
      workerData,
    });
    this.pool.on('message', (m: unknown) => {
      if (isCallStarted(m)) this.armers.get(m.rewardCallStarted)?.();
    });
    // A thread that dies with no task in flight (e.g. a late throw in an abandoned async reward)
    // is reported here; piscina replaces it. Without a listener the 'error' event would throw.
    this.pool.on('error', (err: unknown) => {
      this.opts.log('error', 'reward_thread_error', { message: err instanceof Error ? err.message : String(err) });
    });
    this.info = this.describe();
    this.info.catch(() => undefined); // surfaced by ready() and score(), not as an unhandled rejection
  }

  /** Resolves once a thread has loaded the task: its name and the active rewards with weights. */
  ready(): Promise<RewardPoolInfo> {
    return this.info;
  }

  stats(): RewardPoolStats {
    return { ...this.counters };
  }

  /**
   * Every active reward on every item. Throws GRPO_ERR_REWARD_FAILED when a reward still fails
   * after `retries` retries, GRPO_ERR_REWARD_POOL_CLOSED after close(), and the task's loading
   * error (e.g. GRPO_ERR_UNKNOWN_TASK, GRPO_ERR_UNKNOWN_REWARD) when the task cannot be loaded.
   */
  async score(items: readonly ScoreItem[]): Promise<ScoreResult> {
    this.checkOpen();
    const { rewards } = await this.info;
    items.forEach((item, i) => {
      if (typeof item?.prompt !== 'string' || typeof item.completion !== 'string') {
        throw new GrpoError('GRPO_ERR_REWARD_INPUT', `score item ${i} needs string prompt and completion`);
      }
    });
    const out = items.map(() => Object.fromEntries(rewards.map((r) => [r.name, null])) as Record<string, number | null>);
    const errors: RewardErrorInfo[] = [];
    const batch = { failed: null as GrpoError | null };
    await Promise.all(
      items.flatMap((item, i) =>
        rewards.map(async (r) => {
          out[i][r.name] = await this.callWithRetries(item, i, r.name, errors, batch);
        }),
      ),
    );
    return { rewards: out, errors };
  }

  /** Terminates the threads; calls in flight reject with GRPO_ERR_REWARD_POOL_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }

  private checkOpen(): void {
    if (this.closed) throw new GrpoError('GRPO_ERR_REWARD_POOL_CLOSED', 'the reward pool is closed; create a new one');
  }

  private async describe(): Promise<RewardPoolInfo> {
    let reply: DescribeReply;
    try {
      reply = (await this.pool.run({ op: 'describe' })) as DescribeReply;
    } catch (err) {
      this.checkOpen();
      throw new GrpoError('GRPO_ERR_REWARD_THREAD', `reward thread failed while loading task ${this.opts.task}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (!reply.ok) throw new GrpoError(asErrorCode(reply.code), reply.message);
    this.opts.log('info', 'reward_pool_ready', { task: reply.taskName, rewards: reply.rewards, threads: this.opts.threads });
    return { taskName: reply.taskName, rewards: reply.rewards };
  }

  private async callWithRetries(
    item: ScoreItem,
    index: number,
    reward: string,
    errors: RewardErrorInfo[],
    batch: { failed: GrpoError | null },
  ): Promise<number | null> {
    const attempts = this.opts.retries + 1;
    let last: { code: string; message: string } | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (batch.failed) throw batch.failed; // another call of this score() gave up: stop spending threads
      const reply = await this.callOnce(item, reward);
      if (reply.ok) return reply.value;
      this.counters.failedAttempts++;
      last = { code: reply.code, message: reply.message };
      errors.push({ reward, code: reply.code, message: reply.message });
      this.opts.log('warn', 'reward_error', {
        code: reply.code,
        reward,
        item: index,
        attempt,
        attempts,
        ms: Math.round(reply.ms),
        message: reply.message,
      });
    }
    const { code, message } = last as { code: string; message: string };
    const failed = new GrpoError(
      'GRPO_ERR_REWARD_FAILED',
      `reward ${reward} failed on item ${index} in all ${attempts} attempts (reward_retries ${this.opts.retries}); last error ${code}: ${message}`,
      { cause: new GrpoError(asErrorCode(code), message) },
    );
    batch.failed ??= failed;
    this.opts.log('error', 'reward_failed', { code: failed.code, reward, item: index, attempts, last: code, message });
    throw failed;
  }

  /** One attempt: the thread's reply, or a coded failure when the thread was killed or died. */
  private async callOnce(item: ScoreItem, reward: string): Promise<CallReply> {
    this.checkOpen();
    this.counters.calls++;
    const callId = this.nextCallId++;
    const abort = new AbortController();
    const limitMs = this.opts.timeoutMs + this.opts.graceMs;
    let timer: NodeJS.Timeout | undefined;
    this.armers.set(callId, () => {
      timer = setTimeout(() => abort.abort(), limitMs);
    });
    const req: CallRequest = {
      op: 'call',
      callId,
      reward,
      prompt: item.prompt,
      completion: item.completion,
      meta: item.meta,
      timeoutMs: this.opts.timeoutMs,
    };
    try {
      return (await this.pool.run(req, { signal: abort.signal })) as CallReply;
    } catch (err) {
      this.checkOpen();
      if (abort.signal.aborted) {
        this.counters.terminatedThreads++;
        return {
          ok: false,
          code: 'GRPO_ERR_REWARD_TIMEOUT',
          message: `reward ${reward} was still running ${limitMs} ms after it started (timeout ${this.opts.timeoutMs} ms; a synchronous hang?); its thread was terminated and replaced`,
          ms: limitMs,
        };
      }
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, code: 'GRPO_ERR_REWARD_THREAD', message: `reward ${reward}: its thread failed: ${message}`, ms: 0 };
    } finally {
      clearTimeout(timer);
      this.armers.delete(callId);
    }
  }
}
