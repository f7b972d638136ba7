/**
 * RewardPool: a task's reward functions (and those of an optional reward module) run in a piscina
 * thread pool, off the sampling thread, with a per-call timeout and bounded retries; an optional
 * remote reward (./remote-reward.ts) is scored over HTTP beside them.
 *
 * One piscina task = one reward function on a list of calls (./reward-thread.ts): a call is one
 * completion for a per-completion reward, one group's completions for a group reward. The calls
 * of every group of a score() or scoreGroups() go out in `threads` tasks per reward, not one per
 * group or completion: a task costs a message each way, and at hundreds of groups a second those
 * messages cost the sampling thread more than the rewards did. Each call runs under its own
 * timeout. A failing call then goes on alone (./reward-calls.ts), so a timeout or error still
 * names exactly the function and completion that caused it, and the calls after it go on as one
 * task again. A call ends in one of:
 *   - a finite number (or null, "not applicable"): the reward;
 *   - GRPO_ERR_REWARD_THREW / _NAN / _SHAPE / _TIMEOUT, decided in the thread (./reward-thread.ts);
 *   - GRPO_ERR_REWARD_TIMEOUT decided here: a synchronous function that never returns cannot be
 *     interrupted in its own thread, so the pool's kill timer reads which call the thread runs
 *     and since when (./reward-progress.ts) and, `timeoutMs + graceMs` after that call started,
 *     aborts the piscina task; piscina then terminates the thread and starts a replacement;
 *   - GRPO_ERR_REWARD_THREAD: the thread died for another reason (e.g. the reward called
 *     process.exit or ran out of memory).
 * Every failed attempt is logged as one structured line and retried up to `retries` times; a call
 * that still fails fails its group with GRPO_ERR_REWARD_FAILED naming the reward and its last
 * error (score() throws it; scoreGroups() reports it for that group alone), and no more threads
 * are spent on that group. A failure is never turned into a reward of 0, and NaN is never a reward.
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
import { stderrLogger } from '../shared/protocol.js';
import type { ProtocolLogger, RewardErrorInfo } from '../shared/protocol.js';
import { RemoteReward, checkRemoteRewardOptions } from './remote-reward.js';
import type { RemoteRewardOptions, RemoteRewardStats } from './remote-reward.js';
import { ThreadCalls, asErrorCode, type Entry, type Fate, type RewardPoolStats } from './reward-calls.js';
import type { CallReply, DescribeReply, RewardRequest, RewardSpec, RewardThreadData } from './reward-thread.js';

export type { RewardSpec } from './reward-thread.js';
export type { RewardPoolStats } from './reward-calls.js';

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

/**
 * The file piscina runs in each thread, the CommonJS entry in front of ./reward-thread.ts (see
 * reward-thread-entry.cts for why): next to this module once built; when this module runs from
 * src/ (vitest executes the .ts), the compiled file in dist/, since piscina threads need JavaScript.
 */
export function rewardThreadFile(): string {
  const here = fileURLToPath(import.meta.url);
  const file = here.endsWith('.ts')
    ? resolve(dirname(here), '../../dist/rollout-worker/reward-thread-entry.cjs')
    : join(dirname(here), 'reward-thread-entry.cjs');
  if (!existsSync(file)) {
    throw new GrpoError('GRPO_ERR_REWARD_THREAD_MISSING', `reward thread file ${file} does not exist; build the project (npm run build)`);
  }
  return file;
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

function checkItems(items: readonly ScoreItem[]): void {
  items.forEach((item, i) => {
    if (typeof item?.prompt !== 'string' || typeof item.completion !== 'string') {
      throw new GrpoError('GRPO_ERR_REWARD_INPUT', `score item ${i} needs string prompt and completion`);
    }
  });
}

/** Items sharing prompt and meta, scored together: `out[k]` takes item k's scores; `index[k]` names item k in logs and errors. */
interface Part {
  items: readonly ScoreItem[];
  index: readonly number[];
  out: Record<string, number | null>[];
  fate: Fate;
  where: Record<string, unknown>; // added to the part's log lines (e.g. its group id)
}

export class RewardPool {
  private readonly opts: ResolvedOptions;
  private readonly pool: Piscina<RewardRequest, DescribeReply | CallReply>;
  private readonly remote: RemoteReward | null;
  private readonly info: Promise<RewardPoolInfo>;
  private readonly calls: ThreadCalls;
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
    // A thread that dies with no task in flight (e.g. a late throw in an abandoned async reward)
    // is reported here; piscina replaces it. Without a listener the 'error' event would throw.
    this.pool.on('error', (err: unknown) => {
      this.opts.log('error', 'reward_thread_error', { message: err instanceof Error ? err.message : String(err) });
    });
    const { threads, timeoutMs, retries, graceMs, log } = this.opts;
    this.calls = new ThreadCalls(this.pool, { threads, timeoutMs, retries, graceMs, log, checkOpen: () => this.checkOpen() });
    this.remote = remote ? new RemoteReward({ ...remote, log: this.opts.log }) : null;
    this.info = this.describe();
    this.info.catch(() => undefined); // surfaced by ready() and score(), not as an unhandled rejection
  }

  /** Resolves once a thread has loaded the task: its name and the active rewards with weights. */
  ready(): Promise<RewardPoolInfo> {
    return this.info;
  }

  stats(): RewardPoolStats {
    return { ...this.calls.counters };
  }

  /** Request counters of the remote reward; null without one. */
  remoteStats(): RemoteRewardStats | null {
    return this.remote?.stats() ?? null;
  }

  /**
   * Every active reward on every item: per-completion rewards once per item, group rewards (and
   * the remote reward) once per group of items sharing prompt and meta. Throws
   * GRPO_ERR_REWARD_FAILED when a reward still fails after its retries (then no more calls are
   * made for any of the items), GRPO_ERR_REWARD_POOL_CLOSED after close(), and the task's loading
   * error (e.g. GRPO_ERR_UNKNOWN_TASK, GRPO_ERR_UNKNOWN_REWARD) when the task cannot be loaded.
   */
  async score(items: readonly ScoreItem[]): Promise<ScoreResult> {
    this.checkOpen();
    const { rewards } = await this.info;
    checkItems(items);
    const out = items.map(() => Object.fromEntries(rewards.map((r) => [r.name, null])) as Record<string, number | null>);
    const fate: Fate = { errors: [], failed: null };
    await this.run(groupsOf(items).map((idx) => ({ items: idx.map((i) => items[i]), index: idx, out: idx.map((i) => out[i]), fate, where: {} })), rewards);
    if (fate.failed) throw fate.failed;
    return { rewards: out, errors: fate.errors };
  }

  /**
   * Several groups at once, each a list of completions of one prompt (their prompt and meta are
   * the first item's), in as few thread tasks as score() gives one group: what a rollout worker
   * calls with the groups that finished together. A group whose reward still fails after its
   * retries is reported as rejected with GRPO_ERR_REWARD_FAILED; the others are scored as if
   * alone. `ids` (one per group) name the groups in log lines. Throws what score() throws for
   * anything but a failing reward.
   */
  async scoreGroups(groups: readonly (readonly ScoreItem[])[], ids?: readonly string[]): Promise<PromiseSettledResult<ScoreResult>[]> {
    this.checkOpen();
    const { rewards } = await this.info;
    const parts = groups.map((items, g): Part => {
      checkItems(items);
      const stray = items.findIndex((it) => it.prompt !== items[0].prompt);
      if (stray >= 0) throw new GrpoError('GRPO_ERR_REWARD_INPUT', `scoreGroups: item ${stray} of group ${g} has another prompt than its group's first item`);
      return {
        items,
        index: items.map((_, k) => k),
        out: items.map(() => Object.fromEntries(rewards.map((r) => [r.name, null])) as Record<string, number | null>),
        fate: { errors: [], failed: null },
        where: ids?.[g] === undefined ? { group: g } : { group: ids[g] },
      };
    });
    await this.run(parts.filter((p) => p.items.length > 0), rewards);
    return parts.map((p) => (p.fate.failed ? { status: 'rejected', reason: p.fate.failed } : { status: 'fulfilled', value: { rewards: p.out, errors: p.fate.errors } }));
  }

  /** Every active reward on every part: per reward, all its calls in `threads` tasks (the remote reward: a request per part). */
  private async run(parts: readonly Part[], rewards: readonly RewardSpec[]): Promise<void> {
    const remoteName = this.remote?.name;
    const calls = rewards.flatMap((r) => {
      if (r.name === remoteName) return parts.map((p) => this.callRemote(p));
      const entries: Entry[] =
        r.scope === 'group'
          ? parts.map((p) => ({
              call: { prompt: p.items[0].prompt, completions: p.items.map((it) => it.completion), meta: p.items[0].meta },
              fate: p.fate,
              where: { items: [...p.index] },
              logFields: p.where,
              set: (values) => values.forEach((v, k) => (p.out[k][r.name] = v)),
            }))
          : parts.flatMap((p) =>
              p.items.map((it, k): Entry => ({
                call: { prompt: it.prompt, completions: [it.completion], meta: it.meta },
                fate: p.fate,
                where: { item: p.index[k] },
                logFields: p.where,
                set: (values) => (p.out[k][r.name] = values[0]),
              })),
            );
      return [this.calls.run(r.name, entries)];
    });
    await Promise.all(calls);
  }

  /** Terminates the threads and the remote reward's connections; calls in flight reject with GRPO_ERR_REWARD_POOL_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.pool.destroy(), this.remote?.close()]);
  }

  /** The remote reward on one part; its own retries and backoff happen inside RemoteReward. */
  private async callRemote(p: Part): Promise<void> {
    const remote = this.remote!;
    if (p.fate.failed) return;
    try {
      const r = await remote.score(p.items);
      p.fate.errors.push(...r.errors);
      r.values.forEach((v, k) => (p.out[k][remote.name] = v));
    } catch (err) {
      this.checkOpen();
      if (!(err instanceof GrpoError && err.code === 'GRPO_ERR_REWARD_FAILED')) throw err;
      p.fate.failed ??= err;
      const last = err.cause instanceof GrpoError ? err.cause.code : null;
      this.opts.log('error', 'reward_failed', { code: err.code, reward: remote.name, ...p.where, items: p.index, last, message: err.message });
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
}
