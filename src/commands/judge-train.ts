/**
 * `grpo judge-train`: trains the fill-in task's frozen judge, a small language model of the clean
 * corpus (src/offline/judge-train.ts), and writes it as a checkpoint for task option
 * `judge_checkpoint`.
 *
 *   grpo judge-train --out runs/judge [--steps N] [--batch-size B] [--lr LR]
 *                    [--model-size tiny|small|medium|base] [--seed S] [--eval-pairs N] [--backend ...]
 *
 * Prints one line: the held-out check (clean sentence scored above a one-letter-wrong copy) and
 * where the judge went. An existing checkpoint at --out is an error (a judge in use must not be
 * replaced under a running job); choose another --out or delete it.
 */
import { Command } from 'commander';
import { coerceFlag } from '../shared/config-flags.js';
import { DEFAULT_CONFIG } from '../shared/config.js';
import type { BackendChoice } from '../engine/backend.js';
import { GrpoError } from '../shared/errors.js';
import { isCompleteCheckpoint } from '../model/checkpoint.js';
import { MODEL_SIZES, type ModelSize } from '../model/presets.js';
import { JUDGE_DEFAULTS, trainJudge, type JudgeTrainResult } from '../offline/judge-train.js';
import { commandAction } from './action.js';
import { startEngine, type CommandIO } from './io.js';

export interface JudgeTrainCommandOptions {
  out: string;
  steps?: string;
  batchSize?: string;
  lr?: string;
  modelSize?: string;
  seed?: string;
  evalPairs?: string;
  backend?: string;
}

function num(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new GrpoError('GRPO_ERR_JUDGE_OPTIONS', `${flag} is "${value}"; it must be a number`);
  return n;
}

export async function judgeTrainCommand(opts: JudgeTrainCommandOptions, io: CommandIO, signal?: AbortSignal): Promise<JudgeTrainResult> {
  const modelSize = (opts.modelSize ?? JUDGE_DEFAULTS.modelSize) as ModelSize;
  if (!MODEL_SIZES.includes(modelSize)) {
    throw new GrpoError('GRPO_ERR_JUDGE_OPTIONS', `--model-size is "${opts.modelSize}"; use one of ${MODEL_SIZES.join(', ')}`);
  }
  if (await isCompleteCheckpoint(opts.out)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_EXISTS', `${opts.out} already holds a checkpoint; choose another --out, or delete it to train a new judge there`);
  }
  const backend = (opts.backend !== undefined ? coerceFlag('backend', opts.backend) : 'auto') as BackendChoice;
  await startEngine(backend, io);
  const r = await trainJudge({
    out: opts.out,
    steps: num('--steps', opts.steps, JUDGE_DEFAULTS.steps),
    batchSize: num('--batch-size', opts.batchSize, JUDGE_DEFAULTS.batchSize),
    lr: num('--lr', opts.lr, JUDGE_DEFAULTS.lr),
    modelSize,
    seed: num('--seed', opts.seed, DEFAULT_CONFIG.seed),
    evalPairs: num('--eval-pairs', opts.evalPairs, JUDGE_DEFAULTS.evalPairs),
    log: io.log,
    signal,
  });
  const e = r.eval;
  io.out(
    `judge ${r.interrupted ? 'interrupted' : 'done'}: step ${r.step}, loss ${r.loss.toFixed(4)} nats/char; held-out: clean sentence above a ` +
      `one-letter-wrong copy in ${(100 * e.pairwiseAccuracy).toFixed(1)}% of ${e.pairs} pairs (mean score ${e.meanClean.toFixed(3)} vs ` +
      `${e.meanCorrupted.toFixed(3)}); ${r.seconds.toFixed(1)} s; checkpoint ${r.out}`,
  );
  return r;
}

export function registerJudgeTrain(program: Command, io: () => CommandIO): void {
  program.addCommand(
    new Command('judge-train')
      .description('train the fill-in task\'s frozen judge (a language model of its corpus) into --out')
      .requiredOption('--out <dir>', 'checkpoint directory to write (task option judge_checkpoint)')
      .option('--steps <n>', `optimizer steps (default ${JUDGE_DEFAULTS.steps})`)
      .option('--batch-size <n>', `sentences per step (default ${JUDGE_DEFAULTS.batchSize})`)
      .option('--lr <lr>', `peak learning rate (default ${JUDGE_DEFAULTS.lr})`)
      .option('--model-size <size>', `tiny|small|medium|base (default ${JUDGE_DEFAULTS.modelSize})`)
      .option('--seed <n>', `fixes the sentences and the initial weights (default ${DEFAULT_CONFIG.seed})`)
      .option('--eval-pairs <n>', `held-out pairs in the final check (default ${JUDGE_DEFAULTS.evalPairs})`)
      .option('--backend <auto|tensorflow|webgpu|native|wasm|cpu>', 'tensor engine', 'auto')
      // first Ctrl-C or SIGTERM: stop after the current step, check and save; a second one exits at once
      .action(commandAction(io, judgeTrainCommand)),
  );
}
