/**
 * Supervised warm start: teach a fresh (or resumed) policy the task's reference completions, so
 * GRPO starts from a model that already half-solves the task.
 *
 * The loop, top to bottom: learning rate for this step -> the next batch of train examples (by
 * index, from the data cursor) -> loss on completion tokens, gradients, global-norm clip, AdamW
 * and one host read (loss, grad norm), all in sftStep (sft-step.ts) -> log/progress -> checkpoint
 * every `save_interval` steps.
 * At the end: held-out greedy accuracy, then the final checkpoint with the accuracy in its
 * trainer_state.json. A checkpoint holds everything needed to continue at the same step on the
 * same data: weights, AdamW moments, and the data cursor.
 *
 * Start: a fresh model of `model_size` for the task's character alphabet, or (`model`) a pretrained
 * checkpoint's weights and tokenizer, or (`resumeFrom`) an SFT checkpoint with its optimizer.
 * Examples come from the task, or with `dataset` from a file's prompt and completion fields.
 *
 * Hyperparameters come from the shared config: sft_steps, sft_batch_size, sft_lr, model_size,
 * seed, task, task_options, weight_decay, adam_beta1/2, adam_eps, grad_clip, min_lr_ratio,
 * save_interval, eval_samples. The schedule is fixed for SFT: linear warm-up over the first 5% of
 * steps (short, since a fresh model's first Adam steps are the noisiest), then a cosine to
 * min_lr_ratio; `lr_schedule` and `warmup_steps` are GRPO's.
 */
import { resolve } from 'node:path';
import { publicConfig, type Config } from '../shared/config.js';
import { GrpoError } from '../shared/errors.js';
import { evaluate, type EvalResult } from '../eval/eval.js';
import { loadCheckpoint, saveCheckpoint, type Checkpoint, type TrainerState } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { presetConfig } from '../model/presets.js';
import type { Tokenizer } from '../model/types.js';
import { progressBar, type ProgressBar } from '../shared/progress-bar.js';
import { silentLogger, type ProtocolLogger } from '../shared/protocol.js';
import { loadRunTask } from '../tasks/run-task.js';
import { tokenizerForTask } from '../tasks/encoding.js';
import { checkSftTargets } from '../tasks/grammar-batch.js';
import type { Task } from '../tasks/types.js';
import { AdamW } from '../optim/adamw.js';
import { learningRate, validateSchedule, type LrSchedule } from '../optim/schedule.js';
import { sftBatch } from './sft-batch.js';
import { sftStep } from './sft-step.js';

export const SFT_WARMUP_FRACTION = 0.05;
/** Train targets checked against the task's grammar before SFT starts (a few ms for 256). */
export const SFT_GRAMMAR_CHECK_EXAMPLES = 256;

export interface SftStepMetrics {
  step: number; // steps completed
  loss: number; // mean NLL per completion token, nats
  lr: number;
  gradNorm: number; // before clipping
  tokensPerSecond: number; // all batch positions (padding included) per second of step time
}

/** Where per-step progress goes: a progress bar on a TTY. Without one, steps are logged. */
export type SftProgress = Pick<ProgressBar<SftStepMetrics>, 'start' | 'update' | 'stop'>;

/** The progress bar of `grpo sft` and of `grpo train`'s warm start on `stream` (a TTY). */
export function sftProgressBar(stream: NodeJS.WriteStream, inner: ProtocolLogger): ProgressBar<SftStepMetrics> {
  return progressBar<SftStepMetrics>(stream, inner, {
    label: 'sft',
    columns: 'loss {loss} | lr {lr} | {tps} tok/s',
    fields: { loss: (m) => m.loss.toFixed(4), lr: (m) => m.lr.toExponential(2), tps: (m) => Math.round(m.tokensPerSecond) },
    value: (m) => m.step,
    etaBuffer: 20,
  });
}

export interface SftOptions {
  config: Config;
  /** A checkpoint written by an earlier SFT run (loaded with its optimizer) to continue from. */
  resumeFrom?: Checkpoint;
  log?: ProtocolLogger;
  progress?: SftProgress;
  /** Aborting stops after the current step; the run is checkpointed and evaluated as usual. */
  signal?: AbortSignal;
}

export interface SftResult {
  out: string; // checkpoint directory
  step: number;
  totalSteps: number;
  loss: number; // last step's loss (NaN when no step ran)
  interrupted: boolean;
  eval: EvalResult;
  seconds: number;
  params: number;
}

/** SFT's entry in trainer_state.json. */
export interface SftTrainerState extends TrainerState {
  phase: 'sft';
  dataCursor: { split: 'train'; index: number }; // next train example
  rng: null; // SFT draws no random numbers after the seeded init: data come by index
  config: Config;
  loss: number;
  eval?: { samples: number; accuracy: number };
}

interface Run {
  config: Config;
  task: Task;
  tokenizer: Tokenizer;
  model: LlamaModel;
  optimizer: AdamW;
  step: number;
  cursor: number;
}

async function startRun(o: SftOptions): Promise<Run> {
  const config = o.config;
  const adam = { beta1: config.adam_beta1, beta2: config.adam_beta2, eps: config.adam_eps, weightDecay: config.weight_decay };
  // the task with prompts formatted for the tokenizer's chat template, and rows from `dataset` when given
  const runTask = (tokenizer: Tokenizer | null, contextTokens?: number, source?: string): Promise<Task> =>
    loadRunTask(config, { tokenizer, needCompletion: true, log: o.log, ...(contextTokens === undefined ? {} : { contextTokens }), ...(source ? { source } : {}) });
  if (!o.resumeFrom && config.model !== null) {
    // fine-tune a pretrained checkpoint: its weights, tokenizer and chat template; a fresh optimizer
    const ckpt = await loadCheckpoint(config.model);
    const task = await runTask(ckpt.tokenizer, ckpt.config.max_position_embeddings, config.model);
    checkSftTargets(task, ckpt.tokenizer, SFT_GRAMMAR_CHECK_EXAMPLES);
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
    return { config, task, tokenizer: ckpt.tokenizer, model, optimizer: new AdamW(model.variables(), adam), step: 0, cursor: 0 };
  }
  if (!o.resumeFrom) {
    const task = await runTask(null);
    const tokenizer = tokenizerForTask(task);
    checkSftTargets(task, tokenizer, SFT_GRAMMAR_CHECK_EXAMPLES); // never teach what sampling forbids
    const modelConfig = presetConfig(config.model_size, tokenizer, {
      // prompt + completion + BOS must fit; keep the preset's window when it is larger
      max_position_embeddings: Math.max(256, task.maxPromptChars + task.maxCompletionTokens + 1),
    });
    const model = LlamaModel.create(modelConfig, config.seed);
    return { config, task, tokenizer, model, optimizer: new AdamW(model.variables(), adam), step: 0, cursor: 0 };
  }
  const ckpt = o.resumeFrom;
  const state = ckpt.trainerState as Partial<SftTrainerState> | undefined;
  if (state?.phase !== 'sft' || typeof state.dataCursor?.index !== 'number') {
    throw new GrpoError('GRPO_ERR_RESUME', 'the checkpoint has no SFT trainer_state.json (phase "sft" with a data cursor); resume only SFT checkpoints');
  }
  if (!ckpt.optimizer) {
    throw new GrpoError('GRPO_ERR_RESUME', 'the checkpoint has no optimizer.safetensors; an SFT run cannot continue without its AdamW state');
  }
  const task = await runTask(ckpt.tokenizer, ckpt.config.max_position_embeddings);
  checkSftTargets(task, ckpt.tokenizer, SFT_GRAMMAR_CHECK_EXAMPLES);
  const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
  const optimizer = new AdamW(model.variables(), adam);
  try {
    optimizer.importState(ckpt.optimizer);
  } catch (err) {
    model.dispose();
    optimizer.dispose();
    throw err;
  }
  return { config, task, tokenizer: ckpt.tokenizer, model, optimizer, step: state.step!, cursor: state.dataCursor.index };
}

async function save(run: Run, out: string, loss: number, evalResult?: EvalResult): Promise<void> {
  const trainerState: SftTrainerState = {
    step: run.step,
    policyVersion: 0,
    phase: 'sft',
    dataCursor: { split: 'train', index: run.cursor },
    rng: null,
    config: publicConfig(run.config),
    loss,
    ...(evalResult ? { eval: { samples: evalResult.samples, accuracy: evalResult.accuracy } } : {}),
  };
  await saveCheckpoint(out, {
    config: run.model.config,
    weights: await run.model.toHostTensors(),
    tokenizer: run.tokenizer,
    optimizer: await run.optimizer.exportState(),
    trainerState,
  });
}

export async function trainSft(o: SftOptions): Promise<SftResult> {
  const t0 = performance.now();
  const log = o.log ?? silentLogger;
  const config = o.config;
  const out = resolve(config.out);
  const total = config.sft_steps;
  const batchSize = config.sft_batch_size;
  const schedule: LrSchedule = {
    lr: config.sft_lr,
    schedule: 'cosine',
    warmupSteps: Math.round(total * SFT_WARMUP_FRACTION),
    totalSteps: total,
    minLrRatio: config.min_lr_ratio,
  };
  validateSchedule(schedule);

  const run = await startRun(o);
  try {
    log('info', 'sft_start', {
      task: run.task.name,
      taskOptions: run.task.options,
      params: run.model.numParams(),
      modelSize: o.resumeFrom ? null : config.model_size,
      fromStep: run.step,
      steps: total,
      batchSize,
      lr: config.sft_lr,
      out,
    });
    let loss = NaN;
    let interrupted = false;
    const logEvery = Math.max(1, Math.round(total / 20));
    o.progress?.start(total, run.step);
    while (run.step < total) {
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const lr = learningRate(schedule, run.step);
      const batch = sftBatch(run.task, run.tokenizer, 'train', run.cursor, batchSize);
      const ts = performance.now();
      const r = await sftStep(run.model, run.optimizer, batch, {
        lr,
        gradClip: config.grad_clip,
        label: `SFT step ${run.step + 1}`,
        lrHint: `--lr (now ${config.sft_lr})`,
      });
      const seconds = (performance.now() - ts) / 1000;
      run.step += 1;
      run.cursor += batchSize;
      loss = r.loss;
      const m: SftStepMetrics = { step: run.step, loss, lr, gradNorm: r.gradNorm, tokensPerSecond: batch.ids.length / seconds };
      if (o.progress) o.progress.update(m);
      else if (run.step % logEvery === 0 || run.step === total) log('info', 'sft_step', { ...m, seconds });
      if (config.save_interval > 0 && run.step % config.save_interval === 0 && run.step < total) {
        await save(run, out, loss);
        log('debug', 'checkpoint_saved', { dir: out, step: run.step });
      }
    }
    o.progress?.stop();

    const evalResult = await evaluate(run.model, run.tokenizer, run.task, { samples: config.eval_samples, k: 1, seed: config.seed });
    await save(run, out, loss, evalResult);
    log('info', 'checkpoint_saved', { dir: out, step: run.step });
    const seconds = (performance.now() - t0) / 1000;
    log('info', 'sft_done', { step: run.step, loss, accuracy: evalResult.accuracy, samples: evalResult.samples, interrupted, seconds });
    return { out, step: run.step, totalSteps: total, loss, interrupted, eval: evalResult, seconds, params: run.model.numParams() };
  } finally {
    o.progress?.stop();
    run.optimizer.dispose();
    run.model.dispose();
  }
}
