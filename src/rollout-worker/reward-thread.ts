/**
 * The piscina worker file of RewardPool (./reward-pool.ts): one reward function applied to a list
 * of calls per piscina task, one call after another until one fails; a call is one completion
 * for a per-completion reward, or one group's completions for a group reward. The pool packs the
 * calls of several groups into one task (a task costs a message each way, which at hundreds of
 * groups a second cost the sampling thread more than the rewards did). Each thread loads the task
 * (built-in name or module path) and the optional reward module once, on its first request, and
 * keeps its resolved reward functions.
 *
 * Timeouts are per call, enforced in two places:
 *   - here, for async rewards: a call still pending after `timeoutMs` is answered with
 *     GRPO_ERR_REWARD_TIMEOUT and abandoned (its promise keeps running, its result is dropped);
 *     a synchronous call that returns but took longer than `timeoutMs` gets the same code;
 *   - in the pool, for synchronous hangs that never give the event loop back: this file writes
 *     each call's index and start time into the task's shared progress slot
 *     (./reward-progress.ts) just before calling the function; the pool's kill timer reads it and
 *     aborts the piscina task once the running call is over its limit, which terminates the thread.
 *
 * Reward errors are returned as plain data, never thrown: structured clone keeps an Error's
 * message but drops its `code`, and a thrown error would look like a crashed thread.
 */
import { performance } from 'node:perf_hooks';
import { workerData } from 'node:worker_threads';
import { toGrpoError } from '../shared/errors.js';
import { loadRewardModule, loadTask, resolveRewards } from '../tasks/index.js';
import { markStarted } from './reward-progress.js';
import type { TaskReward } from '../tasks/index.js';

/** What the pool gives every thread as workerData. */
export interface RewardThreadData {
  task: string; // built-in task name or module path (relative to the working directory)
  taskSeed: number;
  taskOptions: Record<string, unknown>;
  rewardWeights: Record<string, number>; // config reward_weights; missing names keep the task default
  rewardModule: string | null; // config reward_module: path of a module whose rewards join the task's
}

export interface DescribeRequest {
  op: 'describe';
}

/** One call of a reward function: one completion (per-completion reward) or a group's completions (group reward). */
export interface RewardCall {
  prompt: string;
  completions: string[];
  meta: unknown;
}

export interface CallRequest {
  op: 'call';
  reward: string; // reward function name
  calls: RewardCall[]; // made one after another until one fails
  timeoutMs: number; // per call, ms
  /** The task's progress slot (./reward-progress.ts): 8 bytes this thread writes as each call starts. */
  progress: SharedArrayBuffer;
}

export type RewardRequest = DescribeRequest | CallRequest;

export interface RewardSpec {
  name: string;
  weight: number;
  /** 'group': called once per group with all its completions (absent: once per completion). */
  scope?: 'group';
}

export type DescribeReply =
  | { ok: true; taskName: string; rewards: RewardSpec[] }
  | { ok: false; code: string; message: string };

export type CallReply =
  | { ok: true; values: (number | null)[][]; ms: number } // per call, one score per completion
  | CallFailure;

/** A failed task: call `item` failed (the calls after it were not made); `values` holds the scores of the calls before it. */
export interface CallFailure {
  ok: false;
  code: string;
  message: string;
  ms: number;
  item?: number;
  values?: (number | null)[][];
}

interface Loaded {
  taskName: string;
  rewards: RewardSpec[];
  fns: Map<string, TaskReward>;
}

let loading: Promise<Loaded> | null = null;

/** Loads the task once per thread; a failure is remembered (loading is deterministic). */
function loaded(): Promise<Loaded> {
  loading ??= (async () => {
    const data = workerData as RewardThreadData;
    const task = await loadTask(data.task, { seed: data.taskSeed, options: data.taskOptions });
    const extra = data.rewardModule ? await loadRewardModule(data.rewardModule) : [];
    const rewards = resolveRewards(task, data.rewardWeights, extra);
    return {
      taskName: task.name,
      rewards: rewards.map((r): RewardSpec => (r.group ? { name: r.name, weight: r.weight, scope: 'group' } : { name: r.name, weight: r.weight })),
      fns: new Map(rewards.map((r) => [r.name, r])),
    };
  })();
  return loading;
}

const TIMED_OUT = Symbol('timed out');

/** The promise's value, or TIMED_OUT after `ms`; a later rejection of the abandoned promise is swallowed. */
function settleWithin<T>(p: PromiseLike<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  const promise = Promise.resolve(p);
  promise.catch(() => undefined); // an abandoned call must not become an unhandled rejection
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function isPromiseLike(x: unknown): x is PromiseLike<unknown> {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof (x as { then?: unknown }).then === 'function';
}

function describeValue(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.slice(0, 40))}`;
  return `a value of type ${typeof v}`;
}

/** null when `value` is a valid reward, else what is wrong with it. */
function invalidScore(value: unknown): string | null {
  if (value === null) return null; // "not applicable", as on the wire
  return typeof value === 'number' && Number.isFinite(value) ? null : describeValue(value);
}

async function call(req: CallRequest): Promise<CallReply> {
  const { fns } = await loaded();
  const reward = fns.get(req.reward);
  if (!reward) {
    return {
      ok: false,
      code: 'GRPO_ERR_UNKNOWN_REWARD',
      message: `reward ${JSON.stringify(req.reward)} is not an active reward of this task (active: ${[...fns.keys()].join(', ')})`,
      ms: 0,
    };
  }
  const progress = new BigInt64Array(req.progress);
  const values: (number | null)[][] = [];
  const t0 = performance.now();
  for (let k = 0; k < req.calls.length; k++) {
    const n = req.calls[k].completions.length;
    if (reward.group === undefined && n !== 1) {
      return { ok: false, code: 'GRPO_ERR_REWARD_INPUT', message: `reward ${req.reward} scores one completion per call, got ${n}`, ms: 0, item: k, values };
    }
    markStarted(progress, k);
    const r = await callOne(req, reward, req.calls[k]);
    if (!r.ok) return { ...r, item: k, values };
    values.push(r.values);
  }
  return { ok: true, values, ms: performance.now() - t0 };
}

/** One call of `reward`: a per-completion reward on c.completions[0], or a group reward on all of them. */
async function callOne(req: CallRequest, reward: TaskReward, c: RewardCall): Promise<{ ok: true; values: (number | null)[] } | CallFailure> {
  const group = reward.group;
  const n = c.completions.length;
  const t0 = performance.now();
  let value: unknown;
  try {
    const out: unknown = group ? group(c.prompt, c.completions, c.meta) : reward.fn(c.prompt, c.completions[0], c.meta);
    value = isPromiseLike(out) ? await settleWithin(out, req.timeoutMs) : out;
  } catch (err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return { ok: false, code: 'GRPO_ERR_REWARD_THREW', message: `reward ${req.reward} threw ${message}`, ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  if (value === TIMED_OUT || ms > req.timeoutMs) {
    return {
      ok: false,
      code: 'GRPO_ERR_REWARD_TIMEOUT',
      message: `reward ${req.reward} took more than its ${req.timeoutMs} ms timeout (${Math.round(ms)} ms); make it faster or raise reward_timeout_ms`,
      ms,
    };
  }
  if (group && (!Array.isArray(value) || value.length !== n)) {
    return {
      ok: false,
      code: 'GRPO_ERR_REWARD_SHAPE',
      message: `group reward ${req.reward} returned ${Array.isArray(value) ? `${value.length} scores` : describeValue(value)} for ${n} completions; return an array of one score per completion`,
      ms,
    };
  }
  const values: unknown[] = group ? (value as unknown[]) : [value];
  for (let i = 0; i < values.length; i++) {
    const bad = invalidScore(values[i]);
    if (bad === null) continue;
    return {
      ok: false,
      code: 'GRPO_ERR_REWARD_NAN',
      message: `reward ${req.reward} returned ${bad}${group ? ` for completion ${i}` : ''}; a reward must be a finite number (or null for "not applicable")`,
      ms,
    };
  }
  return { ok: true, values: values as (number | null)[] };
}

async function describe(): Promise<DescribeReply> {
  try {
    const { taskName, rewards } = await loaded();
    return { ok: true, taskName, rewards };
  } catch (err) {
    const e = toGrpoError(err, 'GRPO_ERR_UNKNOWN_TASK');
    return { ok: false, code: e.code, message: e.message };
  }
}

/** The piscina handler. */
export default async function handle(req: RewardRequest): Promise<DescribeReply | CallReply> {
  if (req.op === 'describe') return describe();
  try {
    return await call(req);
  } catch (err) {
    // only loading can throw here: reward errors are caught inside call()
    const e = toGrpoError(err, 'GRPO_ERR_UNKNOWN_TASK');
    return { ok: false, code: e.code, message: e.message, ms: 0 };
  }
}
