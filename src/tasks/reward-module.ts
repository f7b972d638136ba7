/**
 * Reward functions from a user's module (config `reward_module`), added to a task's own rewards.
 *
 * What the module may export (JavaScript or TypeScript, see ./user-module.ts):
 *
 *   export default [ { name, weight?, scope?, fn }, ... ]     // or `export const rewards = [...]`
 *   export function brevity(prompt, completion, meta) { ... } // a named function: weight 1
 *   export const variety = { weight: 0.5, scope: 'group', fn } // a named object: its name is the export's
 *
 * When a `default` or `rewards` array is exported, only it counts, in its order (other exports may
 * be helpers); otherwise every exported function and every exported { fn } object is a reward, in
 * alphabetical order of the export names.
 * `scope: 'completion'` (the default): fn(prompt, completion, meta) -> number, once per completion.
 * `scope: 'group'`: fn(prompt, completions, meta) -> one number per completion, once per group of
 * completions of one prompt (e.g. diversity within the group). Either may be async; null means
 * "not applicable", and NaN or a throw is an error (retried, never turned into 0). Weights default
 * to 1 and, like the task's, are overridden by the config's `reward_weights`.
 */
import { GrpoError } from '../shared/errors.js';
import type { GroupRewardFunction, RewardFunction, TaskReward } from './types.js';
import { importUserModule } from './user-module.js';

/** A reward name: a metric key, a `reward_weights` key and a Prometheus label value. */
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export type RewardScope = 'completion' | 'group';

/** One reward as a module exports it. */
export interface RewardExport {
  name?: string; // defaults to the export's name
  weight?: number; // default 1
  scope?: RewardScope; // default 'completion'
  fn: RewardFunction | GroupRewardFunction;
}

/**
 * A TaskReward from a group function: `group` scores a whole group; `fn` scores one completion as
 * a group of one.
 */
export function groupReward(r: { name: string; weight: number; fn: GroupRewardFunction }): TaskReward {
  const group = r.fn;
  const single: RewardFunction = async (prompt, completion, meta) => {
    const scores = await group(prompt, [completion], meta);
    return scores[0] as number;
  };
  return { name: r.name, weight: r.weight, fn: single, group };
}

function fail(path: string, message: string): never {
  throw new GrpoError('GRPO_ERR_REWARD_MODULE', `reward module ${path}: ${message}`);
}

function isRewardObject(x: unknown): x is RewardExport {
  return x !== null && typeof x === 'object' && typeof (x as RewardExport).fn === 'function';
}

/** One export, checked, as a TaskReward. */
export function toTaskReward(path: string, exportName: string, x: unknown): TaskReward {
  const r: RewardExport = typeof x === 'function' ? { fn: x as RewardFunction } : (x as RewardExport);
  if (!isRewardObject(r)) fail(path, `${exportName} is not a function or a { name, weight, scope, fn } object`);
  const name = r.name ?? exportName;
  if (typeof name !== 'string' || !NAME.test(name)) {
    fail(path, `${exportName}: reward name ${JSON.stringify(name)} must be 1-64 letters, digits, _ . - starting with a letter or _`);
  }
  const weight = r.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight)) fail(path, `reward ${name}: weight ${String(weight)} must be a finite number`);
  const scope = r.scope ?? 'completion';
  if (scope === 'group') return groupReward({ name, weight, fn: r.fn as GroupRewardFunction });
  if (scope !== 'completion') fail(path, `reward ${name}: scope ${JSON.stringify(scope)} must be "completion" or "group"`);
  return { name, weight, fn: r.fn as RewardFunction };
}

/** The rewards a module exports (see the file comment for the order). Throws GRPO_ERR_REWARD_MODULE. */
export async function loadRewardModule(path: string): Promise<TaskReward[]> {
  const mod = await importUserModule(path, 'reward module', 'GRPO_ERR_REWARD_MODULE');
  const list = [mod.default, mod.rewards].find(Array.isArray) as unknown[] | undefined;
  const entries: [string, unknown][] =
    list !== undefined
      ? list.map((x, i) => [`rewards[${i}]`, x])
      : Object.entries(mod)
          .filter(([k, x]) => k !== 'default' && (typeof x === 'function' || isRewardObject(x)))
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); // the same order under every module loader
  if (entries.length === 0) {
    fail(path, 'exports no reward: export functions, { name, weight, scope, fn } objects, or a default array of them');
  }
  const rewards = entries.map(([name, x]) => toTaskReward(path, name, x));
  const seen = new Set<string>();
  for (const r of rewards) {
    if (seen.has(r.name)) fail(path, `two rewards are named ${r.name}; names must be unique`);
    seen.add(r.name);
  }
  return rewards;
}

/**
 * The task's rewards followed by extra ones (a reward module's). A name used twice is
 * GRPO_ERR_REWARD_MODULE: the metrics and reward_weights of one would silently be the other's.
 */
export function withExtraRewards(taskName: string, base: readonly TaskReward[], extra: readonly TaskReward[], source: string): TaskReward[] {
  const names = new Set(base.map((r) => r.name));
  for (const r of extra) {
    if (names.has(r.name)) {
      throw new GrpoError('GRPO_ERR_REWARD_MODULE', `${source} defines a reward named ${r.name}, which task ${taskName} already has; rename it`);
    }
    names.add(r.name);
  }
  return [...base, ...extra];
}

/**
 * Every reward of a run with its default weight, in order: the task's, a reward module's, then
 * the remote reward. The learner weighs the workers' scores with these (after reward_weights).
 * A name used twice is GRPO_ERR_REWARD_MODULE, or GRPO_ERR_REMOTE_REWARD_CONFIG for the remote one.
 */
export function runRewardDefaults(
  task: { name: string; rewards: readonly TaskReward[] },
  moduleRewards: readonly TaskReward[],
  remote: { name: string; weight: number } | null,
): { name: string; weight: number }[] {
  const all = withExtraRewards(task.name, task.rewards, moduleRewards, 'reward_module').map((r) => ({ name: r.name, weight: r.weight }));
  if (remote === null) return all;
  if (all.some((r) => r.name === remote.name)) {
    throw new GrpoError('GRPO_ERR_REMOTE_REWARD_CONFIG', `remote_reward_name ${remote.name} is also a reward of task ${task.name} or the reward module; pick another name`);
  }
  return [...all, { name: remote.name, weight: remote.weight }];
}
