/**
 * The piscina worker file of RewardPool (./reward-pool.ts): one reward function applied to one
 * completion, or a group reward applied to one group's completions, per piscina task. Each thread
 * loads the task (built-in name or module path) and the optional reward module once, on its first
 * request, and keeps its resolved reward functions.
 *
 * Timeouts are enforced in two places:
 *   - here, for async rewards: a call still pending after `timeoutMs` is answered with
 *     GRPO_ERR_REWARD_TIMEOUT and abandoned (its promise keeps running, its result is dropped);
 *     a synchronous call that returns but took longer than `timeoutMs` gets the same code;
 *   - in the pool, for synchronous hangs that never give the event loop back: this file posts a
 *     `CallStarted` notice on parentPort just before calling the function, the pool arms its kill
 *     timer from that moment, and on expiry aborts the piscina task, which terminates the thread.
 *
 * Reward errors are returned as plain data, never thrown: structured clone keeps an Error's
 * message but drops its `code`, and a thrown error would look like a crashed thread.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { toGrpoError } from '../shared/errors.js';
import { loadRewardModule, loadTask, resolveRewards } from '../tasks/index.js';
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

export interface CallRequest {
  op: 'call';
  callId: number; // unique per pool, echoed in CallStarted
  reward: string; // reward function name
  prompt: string;
  /**
   * One completion for a per-completion reward; the group's completions for a group reward; with
   * `each`, several completions of one prompt that a per-completion reward scores one by one.
   */
  completions: string[];
  meta: unknown;
  timeoutMs: number; // per call (with `each`: per completion), ms
  each?: boolean;
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
  | { ok: true; values: (number | null)[]; ms: number } // one per completion of the request
  | CallFailure;

/**
 * A failed call. With `each`: `item` is the completion that failed (the calls after it were not
 * made) and `values` the scores of the completions before it.
 */
export interface CallFailure {
  ok: false;
  code: string;
  message: string;
  ms: number;
  item?: number;
  values?: (number | null)[];
}

/** Posted on parentPort when a call (with `each`: each completion's call) starts running. */
export interface CallStarted {
  rewardCallStarted: number; // callId
  threadId: number;
  item?: number; // with `each`: the completion's index in the request
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
  const group = reward.group;
  const n = req.completions.length;
  if (req.each && group === undefined) {
    // one completion after another, each under its own timeout, until one fails
    const values: (number | null)[] = [];
    const t0 = performance.now();
    for (let k = 0; k < n; k++) {
      const r = await callOne(req, reward, [req.completions[k]], k);
      if (!r.ok) return { ...r, item: k, values };
      values.push(r.values[0]);
    }
    return { ok: true, values, ms: performance.now() - t0 };
  }
  if (group === undefined && n !== 1) {
    return { ok: false, code: 'GRPO_ERR_REWARD_INPUT', message: `reward ${req.reward} scores one completion per call, got ${n}`, ms: 0 };
  }
  return callOne(req, reward, req.completions);
}

/** One call of `reward` (per completion on completions[0], or a group reward on all of them). */
async function callOne(req: CallRequest, reward: TaskReward, completions: string[], item?: number): Promise<CallReply> {
  const group = reward.group;
  const n = completions.length;
  const started: CallStarted = item === undefined ? { rewardCallStarted: req.callId, threadId } : { rewardCallStarted: req.callId, threadId, item };
  parentPort?.postMessage(started);
  const t0 = performance.now();
  let value: unknown;
  try {
    const out: unknown = group ? group(req.prompt, completions, req.meta) : reward.fn(req.prompt, completions[0], req.meta);
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
  return { ok: true, values: values as (number | null)[], ms };
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
