/**
 * `grpo sft`: supervised warm start on a task's generated (prompt, target) pairs, writing a
 * resumable checkpoint to --out (see src/offline/sft.ts for the loop).
 *
 *   grpo sft --task arithmetic --out runs/sft [--steps N] [--model-size tiny|small|medium|base]
 *            [--batch-size B] [--lr LR] [--seed S] [--backend auto|tensorflow|webgpu|native|wasm|cpu] [--device N]
 *   grpo sft --resume runs/sft [--steps N]         continue at the saved step on the same data
 *   grpo sft --model DIR --dataset FILE [--completion-field F] --out runs/sft
 *                                                  fine-tune a pretrained checkpoint on a file's completions
 *
 * --steps, --batch-size and --lr are short for the config keys sft_steps, sft_batch_size and
 * sft_lr; every other SFT-relevant config key is a flag too (--task-options, --grad-clip, ...).
 * On --resume the run's saved config is used; only the keys in RESUME_OVERRIDABLE may change.
 */
import { Command } from 'commander';
import { readConfigFile, resolveConfig, parseConfig, type Config, type ConfigKey, type RawConfig } from '../shared/config.js';
import { addConfigOptions, coerceFlag, flagName, flagsToRawConfig } from '../shared/config-flags.js';
import { GrpoError } from '../shared/errors.js';
import { isCompleteCheckpoint, loadCheckpoint, type Checkpoint } from '../model/checkpoint.js';
import { sftProgressBar, trainSft, type SftResult } from '../offline/sft.js';
import { commandAction } from './action.js';
import { startEngine, type CommandIO } from './io.js';

export const SFT_KEYS: readonly ConfigKey[] = [
  'task',
  'task_options',
  'out',
  'seed',
  'backend',
  'device',
  'model_size',
  'sft_steps',
  'sft_batch_size',
  'sft_lr',
  'min_lr_ratio',
  'weight_decay',
  'adam_beta1',
  'adam_beta2',
  'adam_eps',
  'grad_clip',
  'save_interval',
  'eval_samples',
  // a pretrained checkpoint fine-tuned on a file of prompts and completions
  'model',
  'dataset',
  'test_dataset',
  'test_fraction',
  'prompt_field',
  'answer_field',
  'completion_field',
  'apply_chat_template',
  'system_prompt',
];

/**
 * SFT keys that do not change the weights an SFT run produces: where it writes, on which engine,
 * how often it saves and how many problems it is scored on. Every other SFT key is an identity key.
 */
export const SFT_NON_IDENTITY_KEYS: readonly ConfigKey[] = ['out', 'backend', 'device', 'save_interval', 'eval_samples'];

/**
 * Config keys that decide what an SFT run produces: `grpo train` reuses a finished <out>/sft only
 * when they all match. Derived from SFT_KEYS, so a key added there is an identity key unless it
 * is listed as a non-identity one.
 */
export const SFT_IDENTITY_KEYS: readonly ConfigKey[] = SFT_KEYS.filter((k) => !SFT_NON_IDENTITY_KEYS.includes(k));

/** Short flags of the brief and the seeds, mapped onto config keys. */
const ALIASES: Record<string, ConfigKey> = { steps: 'sft_steps', batchSize: 'sft_batch_size', lr: 'sft_lr' };

/** Keys a resumed run may change: how long it runs, where it writes, how it reports and on what. */
const RESUME_OVERRIDABLE = new Set<ConfigKey>(['sft_steps', 'out', 'backend', 'device', 'save_interval', 'eval_samples']);

export interface SftCommandOptions {
  config?: string; // --config FILE
  resume?: string;
  [flag: string]: unknown; // commander's parsed flags (camelCase)
}

/** The config keys the user gave on the command line (config-key flags and aliases). */
export function sftFlags(opts: SftCommandOptions): RawConfig {
  const raw = flagsToRawConfig(opts, SFT_KEYS);
  for (const [alias, key] of Object.entries(ALIASES)) {
    if (opts[alias] === undefined) continue;
    if (raw[key] !== undefined) {
      throw new GrpoError('GRPO_ERR_CONFIG', `--${alias.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} and ${flagName(key)} both given; use one`);
    }
    raw[key] = coerceFlag(key, opts[alias]);
  }
  return raw;
}

/**
 * The saved config of `ckpt` with `flags` applied. Flags for keys outside RESUME_OVERRIDABLE must
 * agree with the saved values (the model and data are fixed by the run being continued).
 */
export function resumeConfig(ckpt: Checkpoint, flags: RawConfig, dir: string): Config {
  const saved = ckpt.trainerState?.config;
  if (saved === undefined) {
    throw new GrpoError('GRPO_ERR_RESUME', `${dir} has no trainer_state.json; only checkpoints written by grpo sft can be resumed`);
  }
  const base = parseConfig(saved, `${dir}/trainer_state.json`);
  const merged: Record<string, unknown> = { ...base, out: flags.out ?? dir };
  for (const [key, value] of Object.entries(flags) as [ConfigKey, unknown][]) {
    if (RESUME_OVERRIDABLE.has(key)) merged[key] = value;
    else if (JSON.stringify(value) !== JSON.stringify(base[key])) {
      throw new GrpoError(
        'GRPO_ERR_RESUME',
        `${flagName(key)} ${JSON.stringify(value)} differs from the resumed run's ${JSON.stringify(base[key])}; ` +
          `a resumed run may change only ${[...RESUME_OVERRIDABLE].map(flagName).join(', ')}`,
      );
    }
  }
  return parseConfig(merged, `resumed config of ${dir}`);
}

export async function sftCommand(opts: SftCommandOptions, io: CommandIO, signal?: AbortSignal): Promise<SftResult> {
  const flags = sftFlags(opts);
  let config: Config;
  let resumeFrom: Checkpoint | undefined;
  if (opts.resume !== undefined) {
    if (opts.config !== undefined) throw new GrpoError('GRPO_ERR_RESUME', '--config and --resume both given; a resumed run uses its saved config');
    resumeFrom = await loadCheckpoint(opts.resume, { withOptimizer: true });
    config = resumeConfig(resumeFrom, flags, opts.resume);
  } else {
    // runs/sft, not the GRPO default runs/grpo, unless the file or a flag names the directory
    const fileOut = opts.config === undefined ? undefined : readConfigFile(opts.config).out;
    const outDefault = flags.out === undefined && fileOut === undefined ? { out: 'runs/sft' } : {};
    config = resolveConfig({ file: opts.config, flags: { ...outDefault, ...flags } });
    if (await isCompleteCheckpoint(config.out)) {
      throw new GrpoError(
        'GRPO_ERR_CHECKPOINT_EXISTS',
        `${config.out} already holds a checkpoint; continue it with --resume ${config.out}, or choose another --out`,
      );
    }
  }
  await startEngine(config.backend, io, config.device);
  io.log('info', 'config', { command: 'sft', ...pick(config, SFT_KEYS), resume: opts.resume ?? null });

  const bar = io.progressStream ? sftProgressBar(io.progressStream, io.log) : null;
  const result = await trainSft({ config, resumeFrom, log: bar?.log ?? io.log, progress: bar ?? undefined, signal });
  const e = result.eval;
  io.out(
    `sft ${result.interrupted ? 'interrupted' : 'done'}: step ${result.step}/${result.totalSteps}, loss ${result.loss.toFixed(4)}, ` +
      `held-out accuracy ${(100 * e.accuracy).toFixed(1)}% (${e.correct}/${e.samples}), ${result.seconds.toFixed(1)} s, checkpoint ${result.out}`,
  );
  return result;
}

function pick(config: Config, keys: readonly ConfigKey[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, config[k]]));
}

export function registerSft(program: Command, io: () => CommandIO): void {
  const cmd = new Command('sft')
    .description('supervised warm start on a task\'s generated data, or (--model DIR --dataset FILE) fine-tuning of a pretrained checkpoint on a file\'s completions; writes a resumable checkpoint to --out')
    .option('--steps <n>', 'SFT optimizer steps (config key sft_steps)')
    .option('--batch-size <n>', 'examples per step (config key sft_batch_size)')
    .option('--lr <lr>', 'peak learning rate (config key sft_lr)')
    .option('--resume <dir>', 'continue the SFT run saved in this checkpoint directory');
  addConfigOptions(cmd, SFT_KEYS);
  // first Ctrl-C or SIGTERM: finish the step, checkpoint, evaluate; a second one exits at once
  cmd.action(commandAction(io, sftCommand));
  program.addCommand(cmd);
}
