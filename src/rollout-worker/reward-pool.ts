/**
 * RewardPool: a task's reward functions (and those of an optional reward module) run in a piscina
 * thread pool, off the sampling thread, with a per-call timeout and bounded retries; an optional
 * remote reward (./remote-reward.ts) is scored over HTTP beside them.
 *
 * One piscina task = one group reward on the completions of one group (items of score() with the
 * same prompt and meta), or a per-completion reward on a group's completions one by one (split in
 * `threads` chunks), each completion's call under its own timeout: a round trip per group, not
 * per completion (at 512 completions a batch, the per-completion round trips took as long as the
 * sampling). A failing completion then goes on alone (callEach), so a timeout or error still
 * names exactly the function and completion that caused it. A call ends in one of:
 *   - a finite number (or null, "not applicable"): the reward;
 *   - GRPO_ERR_REWARD_THREW / _NAN / _SHAPE / _TIMEOUT, decided in the thread (./reward-thread.ts);
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
 * rewards in a module overlap across threads: raise `threads` (reward_threads) for them. The
 * remote reward needs no thread: its requests run on this thread, at most its maxInFlight at once,
 * with its own timeout, retries and backoff (reward_timeout_ms and reward_retries do not apply).
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
import { RemoteReward, checkRemoteRewardOptions } from './remote-reward.js';
import type { RemoteRewardOptions, RemoteRewardStats } from './remote-reward.js';
import type {
  CallFailure,
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
  rewardModule?: string | null; // config reward_module: a module whose rewards join the task's
  /** The remote reward (config remote_reward_*); its default weight, overridden by rewardWeights. */
  remote?: (Omit<RemoteRewardOptions, 'log'> & { weight: number }) | null;
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
  rewardModule: null,
  remote: null,
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

/**
 * Indices of items that form one group: the same prompt and meta (a rollout scores one group per
 * score() call, so this is usually one list of all items), in first-seen order.
 */
function groupsOf(items: readonly ScoreItem[]): number[][] {
  const byKey = new Map<string, number[]>();
  items.forEach((item, i) => {
    const key = JSON.stringify([item.prompt, item.meta ?? null]);
    const list = byKey.get(key);
    if (list) list.push(i);
    else byKey.set(key, [i]);
  });
  return [...byKey.values()];
}

/** `idx` cut into at most `parts` contiguous chunks of near-equal size. */
function chunks(idx: readonly number[], parts: number): number[][] {
  const n = Math.min(parts, idx.length);
  const out: number[][] = [];
  for (let c = 0, start = 0; c < n; c++) {
    const end = start + Math.ceil((idx.length - start) / (n - c));
    out.push(idx.slice(start, end));
    start = end;
  }
  return out;
}

export class RewardPool {
  private readonly opts: ResolvedOptions;
  private readonly pool: Piscina<RewardRequest, DescribeReply | CallReply>;
  private readonly remote: RemoteReward | null;
  private readonly info: Promise<RewardPoolInfo>;
  /** Arms the kill timer of a submitted call when its thread reports it (or, with `each`, one of its completions) started, by callId. */
  private readonly armers = new Map<number, (item: number | undefined) => void>();
  private readonly counters: RewardPoolStats = { calls: 0, failedAttempts: 0, terminatedThreads: 0 };
  private nextCallId = 1;
  private closed = false;

  constructor(options: RewardPoolOptions) {
    // an option given as undefined (e.g. mapped from an unset config key) keeps its default
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.opts = { ...DEFAULTS, ...given } as ResolvedOptions;
    checkOptions(this.opts);
    const remote = this.opts.remote;
    if (remote) checkRemoteRewardOptions(remote);
    // the threads know nothing of the remote reward: its weight is applied here
    const threadWeights = { ...this.opts.rewardWeights };
    if (remote) delete threadWeights[remote.name];
    const workerData: RewardThreadData = {
      task: this.opts.task,
      taskSeed: this.opts.taskSeed,
      taskOptions: this.opts.taskOptions,
      rewardWeights: threadWeights,
      rewardModule: this.opts.rewardModule,
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
      if (isCallStarted(m)) this.armers.get(m.rewardCallStarted)?.(m.item);
    });
    // A thread that dies with no task in flight (e.g. a late throw in an abandoned async reward)
    // is reported here; piscina replaces it. Without a listener the 'error' event would throw.
    this.pool.on('error', (err: unknown) => {
      this.opts.log('error', 'reward_thread_error', { message: err instanceof Error ? err.message : String(err) });
    });
    this.remote = remote ? new RemoteReward({ ...remote, log: this.opts.log }) : null;
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

  /** Request counters of the remote reward; null without one. */
  remoteStats(): RemoteRewardStats | null {
    return this.remote?.stats() ?? null;
  }

  /**
   * Every active reward on every item: per-completion rewards once per item, group rewards (and
   * the remote reward) once per group of items sharing prompt and meta. Throws
   * GRPO_ERR_REWARD_FAILED when a reward still fails after its retries,
   * GRPO_ERR_REWARD_POOL_CLOSED after close(), and the task's loading error (e.g.
   * GRPO_ERR_UNKNOWN_TASK, GRPO_ERR_UNKNOWN_REWARD) when the task cannot be loaded.
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
    const groups = groupsOf(items);
    const remoteName = this.remote?.name;
    const calls = rewards.flatMap((r) => {
      if (r.name === remoteName) return groups.map((g) => this.callRemote(items, g, out, errors, batch));
      const callOf = (idx: readonly number[]) => {
        const first = items[idx[0]];
        return { prompt: first.prompt, completions: idx.map((i) => items[i].completion), meta: first.meta };
      };
      if (r.scope === 'group') {
        return groups.map(async (idx) => {
          const values = await this.callWithRetries(r.name, callOf(idx), { items: idx }, errors, batch);
          idx.forEach((i, k) => (out[i][r.name] = values[k]));
        });
      }
      // a per-completion reward: one thread task per chunk of a group, one chunk per thread
      return groups.flatMap((g) => chunks(g, this.opts.threads)).map(async (idx) => {
        const values = await this.callEach(r.name, callOf(idx), idx, errors, batch);
        idx.forEach((i, k) => (out[i][r.name] = values[k]));
      });
    });
    await Promise.all(calls);
    return { rewards: out, errors };
  }

  /** Terminates the threads and the remote reward's connections; calls in flight reject with GRPO_ERR_REWARD_POOL_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.pool.destroy(), this.remote?.close()]);
  }

  /** The remote reward on one group; its own retries and backoff happen inside RemoteReward. */
  private async callRemote(
    items: readonly ScoreItem[],
    idx: readonly number[],
    out: Record<string, number | null>[],
    errors: RewardErrorInfo[],
    batch: { failed: GrpoError | null },
  ): Promise<void> {
    const remote = this.remote!;
    if (batch.failed) throw batch.failed;
    try {
      const r = await remote.score(idx.map((i) => items[i]));
      errors.push(...r.errors);
      idx.forEach((i, k) => (out[i][remote.name] = r.values[k]));
    } catch (err) {
      this.checkOpen();
      if (err instanceof GrpoError && err.code === 'GRPO_ERR_REWARD_FAILED') {
        batch.failed ??= err;
        const last = err.cause instanceof GrpoError ? err.cause.code : null;
        this.opts.log('error', 'reward_failed', { code: err.code, reward: remote.name, items: idx, last, message: err.message });
      }
      throw err;
    }
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
    const rewards = [...reply.rewards];
    const remote = this.opts.remote;
    if (remote) {
      if (rewards.some((r) => r.name === remote.name)) {
        throw new GrpoError('GRPO_ERR_REMOTE_REWARD_CONFIG', `remote_reward_name ${remote.name} is also a reward of task ${reply.taskName}; pick another name`);
      }
      const weight = this.opts.rewardWeights[remote.name] ?? remote.weight;
      if (weight !== 0) rewards.push({ name: remote.name, weight, scope: 'group' });
    }
    this.opts.log('info', 'reward_pool_ready', { task: reply.taskName, rewards, threads: this.opts.threads, remote: remote?.url ?? null });
    return { taskName: reply.taskName, rewards };
  }

  /**
   * A per-completion reward on the completions of one prompt (items `idx`) in one thread task, so
   * a group costs one round trip, not one per completion. When completion k fails, that failure
   * is k's first attempt: k goes on alone through callWithRetries, exactly as if it had been
   * called alone; the scores before it are kept (recomputed when the thread was killed) and the
   * rest go on as one task again.
   */
  private async callEach(
    reward: string,
    call: Pick<CallRequest, 'prompt' | 'completions' | 'meta'>,
    idx: readonly number[],
    errors: RewardErrorInfo[],
    batch: { failed: GrpoError | null },
  ): Promise<(number | null)[]> {
    const single = (k: number) => ({ ...call, completions: [call.completions[k]] });
    if (idx.length === 1) return this.callWithRetries(reward, call, { item: idx[0] }, errors, batch);
    if (batch.failed) throw batch.failed;
    const reply = await this.callOnce(reward, { ...call, each: true });
    if (reply.ok) return reply.values;
    const k = Math.min(reply.item ?? 0, idx.length - 1);
    const values = (reply.values ?? []).slice(0, k);
    for (let j = values.length; j < k; j++) values.push(...(await this.callWithRetries(reward, single(j), { item: idx[j] }, errors, batch)));
    values.push(...(await this.callWithRetries(reward, single(k), { item: idx[k] }, errors, batch, reply)));
    if (k + 1 < idx.length) {
      const rest = { ...call, completions: call.completions.slice(k + 1) };
      values.push(...(await this.callEach(reward, rest, idx.slice(k + 1), errors, batch)));
    }
    return values;
  }

  /**
   * One call (one completion, or one group for a group reward) with retries: a score per
   * completion. `failed`: the reply of a first attempt already made (by callEach).
   */
  private async callWithRetries(
    reward: string,
    call: Pick<CallRequest, 'prompt' | 'completions' | 'meta'>,
    where: { item: number } | { items: number[] },
    errors: RewardErrorInfo[],
    batch: { failed: GrpoError | null },
    failed?: CallFailure,
  ): Promise<(number | null)[]> {
    const attempts = this.opts.retries + 1;
    let last: { code: string; message: string } | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (batch.failed) throw batch.failed; // another call of this score() gave up: stop spending threads
      const reply = attempt === 1 && failed ? failed : await this.callOnce(reward, call);
      if (reply.ok) return reply.values;
      this.counters.failedAttempts++;
      last = { code: reply.code, message: reply.message };
      errors.push({ reward, code: reply.code, message: reply.message });
      this.opts.log('warn', 'reward_error', {
        code: reply.code,
        reward,
        ...where,
        attempt,
        attempts,
        ms: Math.round(reply.ms),
        message: reply.message,
      });
    }
    const { code, message } = last as { code: string; message: string };
    const on = 'item' in where ? `item ${where.item}` : `the group of items ${where.items.join(',')}`;
    const gaveUp = new GrpoError(
      'GRPO_ERR_REWARD_FAILED',
      `reward ${reward} failed on ${on} in all ${attempts} attempts (reward_retries ${this.opts.retries}); last error ${code}: ${message}`,
      { cause: new GrpoError(asErrorCode(code), message) },
    );
    batch.failed ??= gaveUp;
    this.opts.log('error', 'reward_failed', { code: gaveUp.code, reward, ...where, attempts, last: code, message });
    throw gaveUp;
  }

  /**
   * One attempt: the thread's reply, or a coded failure when the thread was killed or died. With
   * `each`, the kill timer restarts at each completion's call, and a kill names the one running.
   */
  private async callOnce(reward: string, call: Pick<CallRequest, 'prompt' | 'completions' | 'meta' | 'each'>): Promise<CallReply> {
    this.checkOpen();
    this.counters.calls++;
    const callId = this.nextCallId++;
    const abort = new AbortController();
    const limitMs = this.opts.timeoutMs + this.opts.graceMs;
    let timer: NodeJS.Timeout | undefined;
    let running: number | undefined;
    this.armers.set(callId, (item) => {
      clearTimeout(timer);
      running = item;
      timer = setTimeout(() => abort.abort(), limitMs);
    });
    const req: CallRequest = {
      op: 'call',
      callId,
      reward,
      prompt: call.prompt,
      completions: call.completions,
      meta: call.meta,
      timeoutMs: this.opts.timeoutMs,
      ...(call.each ? { each: true } : {}),
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
      this.armers.delete(callId);
    }
  }
}
