/**
 * The task registry: built-in tasks by name, user tasks from a module path, and the reward list
 * with the config's `reward_weights` applied.
 */
import { GrpoError } from '../shared/errors.js';
import { arithmeticTask } from './arithmetic.js';
import { countdownTask } from './countdown.js';
import { fillInTask } from './fill-in/fill-in.js';
import { keywordsTask } from './keywords.js';
import { mathAnswerTask } from './math-answer/math-answer.js';
import { withExtraRewards } from './reward-module.js';
import type { Task, TaskFactory, TaskReward, TaskSpec } from './types.js';
import { importUserModule, looksLikeModulePath } from './user-module.js';

export type * from './types.js';
export { promptIds, completionIds, decodeCompletion, tokenizerForTask } from './encoding.js';
export {
  grammarHook,
  rowGrammarHook,
  dfaMachine,
  fixedLengthMachine,
  machineAccepts,
  runMachine,
  expandCharClass,
  type CharMachine,
  type TokenMachine,
  type GrammarMachine,
  type CharSet,
  type DfaSpec,
} from './grammar.js';
export { batchGrammar, grammarViolation, checkSftTargets, type GrammarRow } from './grammar-batch.js';
export { groupReward, loadRewardModule, runRewardDefaults, withExtraRewards } from './reward-module.js';
export type { RewardExport, RewardScope } from './reward-module.js';

const BUILT_IN: ReadonlyMap<string, TaskFactory> = new Map([
  [arithmeticTask.name, arithmeticTask],
  [countdownTask.name, countdownTask],
  [fillInTask.name, fillInTask],
  [keywordsTask.name, keywordsTask],
  [mathAnswerTask.name, mathAnswerTask],
]);

export function taskNames(): string[] {
  return [...BUILT_IN.keys()];
}

/** A built-in task. Throws GRPO_ERR_UNKNOWN_TASK for a name not registered. */
export function createTask(name: string, spec: TaskSpec): Task {
  const factory = BUILT_IN.get(name);
  if (!factory) {
    throw new GrpoError(
      'GRPO_ERR_UNKNOWN_TASK',
      `unknown task ${JSON.stringify(name)}; built-in tasks: ${taskNames().join(', ')}, or give a path to a module exporting a task`,
    );
  }
  return factory.create(spec);
}

function isFactory(x: unknown): x is TaskFactory {
  const f = x as Partial<TaskFactory> | null;
  return f !== null && typeof f === 'object' && typeof f.name === 'string' && typeof f.create === 'function';
}

/**
 * A built-in task by name, or a user task from a module path (relative to the working directory;
 * JavaScript or TypeScript, see ./user-module.ts) whose default export, or export named `task`,
 * is a TaskFactory.
 */
export async function loadTask(nameOrPath: string, spec: TaskSpec): Promise<Task> {
  if (!looksLikeModulePath(nameOrPath)) return createTask(nameOrPath, spec);
  const mod = await importUserModule(nameOrPath, 'task module', 'GRPO_ERR_UNKNOWN_TASK');
  const factory = [mod.default, mod.task].find(isFactory);
  if (!factory) {
    throw new GrpoError(
      'GRPO_ERR_UNKNOWN_TASK',
      `task module ${nameOrPath} exports no TaskFactory as default or \`task\` ({ name, description, create(spec) })`,
    );
  }
  return factory.create(spec);
}

/**
 * The task's rewards, then `extra` ones (a reward module's), with weights from `weights` (by
 * reward name) replacing the defaults, in that order, leaving out those whose weight ends up 0.
 * A weight naming no reward function is an error: a typo would otherwise be silently ignored.
 */
export function resolveRewards(task: Task, weights: Readonly<Record<string, number>> = {}, extra: readonly TaskReward[] = []): TaskReward[] {
  const all = extra.length === 0 ? task.rewards : withExtraRewards(task.name, task.rewards, extra, 'reward_module');
  const names = new Set(all.map((r) => r.name));
  for (const [name, w] of Object.entries(weights)) {
    if (!names.has(name)) {
      throw new GrpoError(
        'GRPO_ERR_UNKNOWN_REWARD',
        `reward_weights names ${JSON.stringify(name)}, but task ${task.name} has rewards ${[...names].join(', ')}`,
      );
    }
    if (!Number.isFinite(w)) throw new GrpoError('GRPO_ERR_UNKNOWN_REWARD', `reward weight of ${name} is ${w}; it must be finite`);
  }
  return all
    .map((r) => ({ ...r, weight: weights[r.name] ?? r.weight }))
    .filter((r) => r.weight !== 0);
}
