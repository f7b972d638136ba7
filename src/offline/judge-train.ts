/**
 * Trains the fill-in task's judge (`grpo judge-train`): a small Llama language model of the clean
 * corpus, from scratch. Each row is [BOS] text [EOS]; the loss is the mean next-token NLL over the
 * text and EOS. The texts are the clean sentences of the fill-in task's train split (by index, so
 * the run is deterministic in its seed); the held-out check uses the test split.
 *
 * The loop, top to bottom: learning rate (5% warm-up, cosine to 10%) -> the next batch of texts ->
 * loss, gradients, global-norm clip, AdamW and one host read (sftStep, as `grpo sft` does) -> log
 * every 5% of the run. At the end: the held-out check (JudgeEval: each clean test sentence against
 * a copy with one of its masked letters replaced by another letter, the pair counted when the
 * judge scores the clean one higher), then one checkpoint with trainer_state.json phase "judge"
 * and the check's numbers. No optimizer state is saved: a judge is trained once and then only read.
 */
import { resolve } from 'node:path';
import { GrpoError } from '../shared/errors.js';
import { saveCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { presetConfig, type ModelSize } from '../model/presets.js';
import type { Tokenizer } from '../model/types.js';
import { silentLogger, type ProtocolLogger } from '../shared/protocol.js';
import { Rng } from '../shared/rng.js';
import { LETTERS, MASK_CHAR, MAX_SENTENCE_CHARS } from '../tasks/fill-in/corpus.js';
import { createFillIn, type FillInMeta } from '../tasks/fill-in/fill-in.js';
import { tokenizerForTask } from '../tasks/encoding.js';
import type { Task } from '../tasks/types.js';
import { AdamW } from '../optim/adamw.js';
import { learningRate, validateSchedule } from '../optim/schedule.js';
import { sftStep, type SftStepBatch } from './sft-step.js';
import { Judge, type JudgeEval, type JudgeTrainerState } from '../tasks/fill-in/judge.js';

export interface JudgeTrainOptions {
  out: string; // checkpoint directory
  steps: number; // optimizer steps
  batchSize: number; // sentences per step
  lr: number; // peak learning rate
  modelSize: ModelSize;
  seed: number; // fixes the sentences, the init and the held-out pairs
  evalPairs: number; // held-out (clean, corrupted) pairs in the final check
  log?: ProtocolLogger;
  /** Aborting stops after the current step; the judge is checked and saved as usual. */
  signal?: AbortSignal;
}

export interface JudgeTrainResult {
  out: string;
  step: number;
  loss: number; // last step's mean NLL per token, nats
  eval: JudgeEval;
  seconds: number;
  params: number;
  interrupted: boolean;
}

export const JUDGE_DEFAULTS = {
  steps: 300, // ~20 s on 2 cores for the tiny model; held-out pairwise accuracy 1.0 from ~100 steps
  batchSize: 32,
  lr: 3e-3,
  modelSize: 'tiny' as ModelSize,
  evalPairs: 200,
};

const WARMUP_FRACTION = 0.05;
const MIN_LR_RATIO = 0.1;
const GRAD_CLIP = 1.0;

function check(o: JudgeTrainOptions): void {
  const bad = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_JUDGE_OPTIONS', msg);
  };
  for (const [name, v] of [['steps', o.steps], ['batch size', o.batchSize], ['eval pairs', o.evalPairs]] as const) {
    if (!Number.isInteger(v) || v < 1) bad(`judge-train ${name} is ${v}; it must be an integer >= 1`);
  }
  if (!(Number.isFinite(o.lr) && o.lr > 0)) bad(`judge-train lr is ${o.lr}; it must be a positive number`);
  if (!Number.isInteger(o.seed)) bad(`judge-train seed is ${o.seed}; it must be an integer`);
}

/** Rows [BOS] text [EOS], right-padded; mask[b, t] = 1 when position t + 1 is a real token. */
function lmBatch(tokenizer: Tokenizer, texts: readonly string[]): SftStepBatch {
  const rows = texts.map((t) => [tokenizer.bosId!, ...tokenizer.encode(t), tokenizer.eosId]);
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(B * T).fill(tokenizer.padId);
  const mask = new Float32Array(B * (T - 1));
  rows.forEach((r, b) => {
    ids.set(r, b * T);
    mask.fill(1, b * (T - 1), b * (T - 1) + r.length - 1);
  });
  return { ids, mask, batchSize: B, length: T };
}

const cleanText = (task: Task, split: 'train' | 'test', i: number): FillInMeta => task.example(split, i).meta as FillInMeta;

/**
 * `text` with one of the letters the example masked (drawn from `rng`) replaced by another
 * letter: a near miss, one wrong letter of an otherwise correct fill.
 */
export function corruptFill(rng: Rng, masked: string, text: string): string {
  const positions = [...masked].flatMap((c, i) => (c === MASK_CHAR ? [i] : []));
  const p = rng.pick(positions);
  const others = LETTERS.replace(text[p], '');
  return text.slice(0, p) + others[rng.int(0, others.length - 1)] + text.slice(p + 1);
}

/** The held-out check of a trained judge (see the file comment). */
export async function evaluateJudge(judge: Judge, task: Task, pairs: number, seed: number): Promise<JudgeEval> {
  const rng = new Rng(seed ^ 0x5eed);
  const clean: string[] = [];
  const corrupted: string[] = [];
  for (let i = 0; i < pairs; i++) {
    const ex = task.example('test', i);
    const { text } = ex.meta as FillInMeta;
    clean.push(text);
    corrupted.push(corruptFill(rng, ex.prompt, text));
  }
  const a = await judge.score(clean);
  const b = await judge.score(corrupted);
  const nll = await judge.meanNll(clean);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  return {
    pairs,
    pairwiseAccuracy: a.filter((x, i) => x > b[i]).length / pairs,
    meanClean: mean(a),
    meanCorrupted: mean(b),
    nll: mean(nll),
  };
}

export async function trainJudge(o: JudgeTrainOptions): Promise<JudgeTrainResult> {
  check(o);
  const t0 = performance.now();
  const log = o.log ?? silentLogger;
  const out = resolve(o.out);
  const task = createFillIn({ seed: o.seed });
  const tokenizer = tokenizerForTask(task);
  const config = presetConfig(o.modelSize, tokenizer, { max_position_embeddings: Math.max(64, MAX_SENTENCE_CHARS + 2) });
  const model = LlamaModel.create(config, o.seed);
  const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.99 });
  const schedule = { lr: o.lr, schedule: 'cosine' as const, warmupSteps: Math.round(o.steps * WARMUP_FRACTION), totalSteps: o.steps, minLrRatio: MIN_LR_RATIO };
  validateSchedule(schedule);
  log('info', 'judge_train_start', { params: model.numParams(), modelSize: o.modelSize, steps: o.steps, batchSize: o.batchSize, lr: o.lr, seed: o.seed, out });

  let step = 0;
  let loss = NaN;
  let interrupted = false;
  const logEvery = Math.max(1, Math.round(o.steps / 20));
  try {
    while (step < o.steps) {
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const texts = Array.from({ length: o.batchSize }, (_, i) => cleanText(task, 'train', step * o.batchSize + i).text);
      const lr = learningRate(schedule, step);
      ({ loss } = await sftStep(model, optimizer, lmBatch(tokenizer, texts), { lr, gradClip: GRAD_CLIP, label: `judge step ${step + 1}`, lrHint: `--lr (now ${o.lr})` }));
      step += 1;
      if (step % logEvery === 0 || step === o.steps) log('info', 'judge_step', { step, loss });
    }

    // the judge as the task will use it (frozen, scored the same way), before it is saved
    const evalResult = await evaluateJudge(Judge.fromModel(out, model, tokenizer), task, o.evalPairs, o.seed);
    const state: JudgeTrainerState = {
      step,
      policyVersion: 0,
      phase: 'judge',
      corpus: { task: 'fill-in', seed: o.seed },
      dataCursor: { split: 'train', index: step * o.batchSize },
      rng: null,
      config: { steps: o.steps, batchSize: o.batchSize, lr: o.lr, modelSize: o.modelSize, seed: o.seed },
      loss,
      eval: evalResult,
    };
    await saveCheckpoint(out, { config, weights: await model.toHostTensors(), tokenizer, trainerState: state });
    const seconds = (performance.now() - t0) / 1000;
    log('info', 'judge_train_done', { step, loss, ...evalResult, interrupted, seconds, out });
    return { out, step, loss, eval: evalResult, seconds, params: model.numParams(), interrupted };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
