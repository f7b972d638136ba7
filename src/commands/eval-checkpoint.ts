/**
 * What `grpo eval` and `grpo eval --compare` share: their flags, the task a checkpoint is scored on
 * (flags over the run saved in its trainer_state.json, else the config defaults), the evaluation
 * settings of the flags, and scoring one loaded checkpoint.
 */
import { DEFAULT_CONFIG, parseConfig, type Config, type ConfigKey } from '../shared/config.js';
import { coerceFlag } from '../shared/config-flags.js';
import { GrpoError } from '../shared/errors.js';
import { evaluate, type EvalOptions, type EvalResult } from '../eval/eval.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { loadTask, type Task } from '../tasks/index.js';
import { loadRunTask } from '../tasks/run-task.js';

export interface EvalCommandOptions {
  checkpoint?: string;
  model?: string; // a pretrained checkpoint: the same as --checkpoint
  dataset?: string;
  testDataset?: string;
  testFraction?: string;
  promptField?: string;
  answerField?: string;
  systemPrompt?: string;
  applyChatTemplate?: string;
  compare?: string[];
  names?: string;
  out?: string;
  task?: string;
  taskOptions?: string;
  seed?: string;
  samples?: string;
  k?: string;
  n?: string;
  temperature?: string;
  batchSize?: string;
  backend?: string;
  json?: boolean;
}

export interface EvalReport extends EvalResult {
  checkpoint: string;
  seed: number;
  taskOptions: Record<string, unknown>;
  backend: string;
}

function integer(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', `${flag} is "${value}"; it must be an integer`);
  return n;
}

/** The run config saved with the checkpoint, or the defaults when it has none. */
export function savedConfig(state: { config?: unknown } | undefined, dir: string): Config {
  if (state?.config === undefined) return DEFAULT_CONFIG;
  try {
    return parseConfig(state.config, `${dir}/trainer_state.json`);
  } catch {
    return DEFAULT_CONFIG; // written by another tool or version: fall back to flags and defaults
  }
}

/** Data and prompt keys a flag may set over the run's saved ones (`--dataset`, `--system-prompt`, ...). */
const DATA_FLAGS = {
  dataset: 'dataset',
  testDataset: 'test_dataset',
  testFraction: 'test_fraction',
  promptField: 'prompt_field',
  answerField: 'answer_field',
  systemPrompt: 'system_prompt',
  applyChatTemplate: 'apply_chat_template',
} as const satisfies Partial<Record<keyof EvalCommandOptions, ConfigKey>>;

/**
 * The task a checkpoint is evaluated on: flags over the run's saved task (see the file comment),
 * its prompts formatted for `ckpt`'s chat template, and with a dataset its held-out rows
 * (`test_dataset`, else the share of `dataset` the run held out under the same seed).
 */
export async function evalTask(opts: EvalCommandOptions, saved: Config, ckpt?: Pick<Checkpoint, 'tokenizer' | 'config'>): Promise<{ task: Task; seed: number }> {
  const sameTask = opts.task === undefined || opts.task === saved.task;
  const taskName = opts.task ?? saved.task;
  const taskOptions =
    opts.taskOptions !== undefined
      ? (coerceFlag('task_options', opts.taskOptions) as Record<string, unknown>)
      : sameTask
        ? saved.task_options
        : {};
  const seed = integer('--seed', opts.seed, saved.seed);
  const data: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(DATA_FLAGS)) {
    const v = opts[flag as keyof typeof DATA_FLAGS];
    if (v !== undefined) data[key] = coerceFlag(key, v);
  }
  const raw: Record<string, unknown> = { ...saved, task: taskName, task_options: taskOptions, seed, ...data };
  if (opts.task === undefined && data.dataset !== undefined && saved.dataset === null) {
    // a --dataset without --task reads math-answer problems (as train does), whatever the saved run's task was
    delete raw.task; // parseConfig implies math-answer
    if (opts.taskOptions === undefined) raw.task_options = {};
  }
  const config = parseConfig(raw, 'eval flags');
  if (ckpt === undefined) return { task: await loadTask(config.task, { seed, options: config.task_options }), seed };
  const task = await loadRunTask(config, { tokenizer: ckpt.tokenizer, contextTokens: ckpt.config.max_position_embeddings });
  return { task, seed };
}

/** The evaluation settings of the flags; `saved` supplies the default number of problems. */
export function evalOptions(opts: EvalCommandOptions, saved: Config, seed: number): EvalOptions {
  const k = integer('--k', opts.k, 1);
  const temperature = opts.temperature === undefined ? 1 : Number(opts.temperature);
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', `--temperature is "${opts.temperature}"; it must be a number >= 0`);
  }
  return {
    samples: integer('--samples', opts.samples, saved.eval_samples),
    k,
    n: integer('--n', opts.n, k),
    temperature,
    seed,
    batchSize: integer('--batch-size', opts.batchSize, 64),
  };
}

/** Evaluates the checkpoint in `dir` on `task` (loaded, scored, disposed). */
export async function evaluateCheckpoint(dir: string, ckpt: Checkpoint, task: Task, o: EvalOptions, seed: number, backend: string): Promise<EvalReport> {
  const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
  try {
    const result = await evaluate(model, ckpt.tokenizer, task, o);
    return { checkpoint: dir, seed, taskOptions: { ...task.options }, backend, ...result };
  } finally {
    model.dispose();
  }
}
