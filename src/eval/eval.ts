/**
 * Held-out evaluation of a policy on a task: greedy accuracy, pass@k, mean@k and majority@k.
 *
 * The problems are the task's test split, indices 0..samples-1, so every evaluation of a run (SFT
 * end, GRPO baseline, periodic evals, `grpo eval`) scores the same problems. Greedy accuracy
 * decodes each prompt once at temperature 0. pass@k samples n >= k completions per problem at
 * `temperature` and uses the unbiased estimator of Chen et al. (2021):
 *
 *   pass@k = mean over problems of 1 - C(n - c, k) / C(n, k)   (c = correct samples of n)
 *
 * computed as the product 1 - prod_{i = n-c+1..n} (1 - k / i), which never forms a large binomial.
 * With n = 1 no sampling happens (passAtK is null): one sample per problem is only a noisier
 * version of the greedy number.
 *
 * From the same n samples (sampleMetrics):
 *   mean@k      mean correctness of a sample, c / n per problem: the expected share of correct
 *               answers among k samples (the same for every k; the estimate uses all n)
 *   majority@k  whether the most common answer among k samples is correct. The n samples are cut
 *               into floor(n / k) consecutive blocks of k, each block votes on task.answerOf(text)
 *               (the text itself when the task has none; a tie goes to the answer seen first in
 *               the block) and the problem scores the share of blocks whose winner is correct.
 */
import { GrpoError } from '../shared/errors.js';
import type { LlamaModel } from '../model/llama.js';
import { sample } from '../model/sampling.js';
import type { Tokenizer } from '../model/types.js';
import { decodeCompletion, promptIds } from '../tasks/encoding.js';
import type { Task, TaskExample } from '../tasks/types.js';

export interface EvalOptions {
  samples: number; // held-out problems
  k: number; // pass@k
  n?: number; // completions sampled per problem for pass@k; default k, must be >= k
  temperature?: number; // for the pass@k samples; default 1
  topP?: number; // default 1 (off)
  seed?: number; // sampling seed; default 0
  batchSize?: number; // sequences per sampler call; default 64
  maxNewTokens?: number; // default task.maxCompletionTokens
  keepExamples?: number; // greedy results to return for display; default 5
  onProgress?: (done: number, total: number) => void; // sequences decoded so far
}

export interface EvalExample {
  prompt: string;
  target: string | null;
  completion: string; // greedy
  correct: boolean;
}

export interface EvalResult {
  task: string;
  samples: number;
  correct: number; // greedy
  accuracy: number; // greedy, in [0, 1]
  k: number;
  n: number;
  temperature: number;
  passAtK: number | null; // null when n = 1
  meanAtK: number | null; // mean@k, null when n = 1
  majAtK: number | null; // majority@k, null when n = 1
  meanCompletionTokens: number; // greedy, EOS included
  truncatedFraction: number; // greedy completions that hit maxNewTokens without EOS
  seconds: number;
  examples: EvalExample[];
}

/** Unbiased pass@k for one problem with c correct out of n samples. */
export function passAtK(n: number, c: number, k: number): number {
  if (!(Number.isInteger(n) && Number.isInteger(c) && Number.isInteger(k)) || k < 1 || n < k || c < 0 || c > n) {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', `pass@k needs integers 1 <= k <= n and 0 <= c <= n; got n=${n}, c=${c}, k=${k}`);
  }
  if (n - c < k) return 1;
  let fail = 1;
  for (let i = n - c + 1; i <= n; i++) fail *= 1 - k / i;
  return 1 - fail;
}

/** One sampled completion of a problem, as the metrics see it. */
export interface SampleOutcome {
  answer: string; // task.answerOf(completion), or the completion
  correct: boolean;
}

/** pass@k, mean@k and majority@k of one problem's n >= k samples (see the file comment). */
export function sampleMetrics(samples: readonly SampleOutcome[], k: number): { pass: number; mean: number; majority: number } {
  const n = samples.length;
  const c = samples.filter((s) => s.correct).length;
  const pass = passAtK(n, c, k); // validates n, k
  const blocks = Math.floor(n / k);
  let wins = 0;
  for (let b = 0; b < blocks; b++) {
    const votes = new Map<string, { count: number; correct: boolean }>(); // insertion order = first seen
    for (const s of samples.slice(b * k, (b + 1) * k)) {
      const v = votes.get(s.answer);
      if (v) v.count += 1;
      else votes.set(s.answer, { count: 1, correct: s.correct });
    }
    let best: { count: number; correct: boolean } | null = null;
    for (const v of votes.values()) if (best === null || v.count > best.count) best = v;
    if (best!.correct) wins += 1;
  }
  return { pass, mean: c / n, majority: wins / blocks };
}

function checkOptions(o: EvalOptions, n: number): void {
  const bad = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', msg);
  };
  if (!Number.isInteger(o.samples) || o.samples < 1) bad(`samples is ${o.samples}; give at least 1 held-out problem`);
  if (!Number.isInteger(o.k) || o.k < 1) bad(`k is ${o.k}; it must be an integer >= 1`);
  if (!Number.isInteger(n) || n < o.k) bad(`n is ${n}; pass@${o.k} needs at least ${o.k} samples per problem`);
  if (o.batchSize !== undefined && (!Number.isInteger(o.batchSize) || o.batchSize < 1)) bad(`batch size is ${o.batchSize}; it must be >= 1`);
}

interface Decoded {
  text: string;
  tokens: number;
  truncated: boolean;
}

/** Decodes `prompts` (each repeated `repeat` times) in batches; results in input order. */
async function decodeAll(
  model: LlamaModel,
  tokenizer: Tokenizer,
  task: Task,
  prompts: number[][],
  texts: readonly string[], // prompt text of each of `prompts`, for the task's grammar
  repeat: number,
  temperature: number,
  o: EvalOptions,
  progress: { done: number; total: number },
): Promise<Decoded[]> {
  const rows = prompts.flatMap((p) => Array.from({ length: repeat }, () => p));
  const rowTexts = texts.flatMap((t) => Array.from({ length: repeat }, () => t));
  const batch = o.batchSize ?? 64;
  const maxNewTokens = o.maxNewTokens ?? task.maxCompletionTokens;
  const out: Decoded[] = [];
  for (let start = 0; start < rows.length; start += batch) {
    const r = await sample(model, rows.slice(start, start + batch), {
      maxNewTokens,
      temperature,
      topK: 0,
      topP: o.topP ?? 1,
      stopTokens: [...tokenizer.stopIds],
      seed: (o.seed ?? 0) + start, // a distinct stream per batch, the same for the same run
      allowedTokens: task.grammar?.(tokenizer, rowTexts.slice(start, start + batch)),
    });
    r.tokens.forEach((ids, i) => {
      out.push({ text: decodeCompletion(tokenizer, ids), tokens: ids.length, truncated: r.finishReason[i] === 'length' });
    });
    progress.done += r.tokens.length;
    o.onProgress?.(progress.done, progress.total);
  }
  return out;
}

export async function evaluate(model: LlamaModel, tokenizer: Tokenizer, task: Task, o: EvalOptions): Promise<EvalResult> {
  const n = o.n ?? o.k;
  checkOptions(o, n);
  const t0 = performance.now();
  const temperature = o.temperature ?? 1;
  // a task read from a file has a finite held-out set: each problem once, not the set repeated
  const samples = Math.min(o.samples, task.size?.test ?? o.samples);
  const problems: TaskExample[] = Array.from({ length: samples }, (_, i) => task.example('test', i));
  const prompts = problems.map((p) => promptIds(tokenizer, p.prompt));
  const texts = problems.map((p) => p.prompt);
  const progress = { done: 0, total: samples * (n > 1 ? n + 1 : 1) };

  const greedy = await decodeAll(model, tokenizer, task, prompts, texts, 1, 0, o, progress);
  const correct = greedy.map((g, i) => task.isCorrect(problems[i].prompt, g.text, problems[i].meta));
  const numCorrect = correct.filter(Boolean).length;

  let pass: number | null = null;
  let mean: number | null = null;
  let majority: number | null = null;
  if (n > 1) {
    const sampled = await decodeAll(model, tokenizer, task, prompts, texts, n, temperature, o, progress);
    const answerOf = (text: string): string => (task.answerOf ? task.answerOf(text) : text);
    const sums = { pass: 0, mean: 0, majority: 0 };
    problems.forEach((p, i) => {
      const outcomes = sampled.slice(i * n, (i + 1) * n).map((s) => ({ answer: answerOf(s.text), correct: task.isCorrect(p.prompt, s.text, p.meta) }));
      const m = sampleMetrics(outcomes, o.k);
      sums.pass += m.pass;
      sums.mean += m.mean;
      sums.majority += m.majority;
    });
    pass = sums.pass / problems.length;
    mean = sums.mean / problems.length;
    majority = sums.majority / problems.length;
  }

  return {
    task: task.name,
    samples,
    correct: numCorrect,
    accuracy: numCorrect / samples,
    k: o.k,
    n,
    temperature,
    passAtK: pass,
    meanAtK: mean,
    majAtK: majority,
    meanCompletionTokens: greedy.reduce((a, g) => a + g.tokens, 0) / greedy.length,
    truncatedFraction: greedy.filter((g) => g.truncated).length / greedy.length,
    seconds: (performance.now() - t0) / 1000,
    examples: problems.slice(0, o.keepExamples ?? 5).map((p, i) => ({
      prompt: p.prompt,
      target: p.target ?? null,
      completion: greedy[i].text,
      correct: correct[i],
    })),
  };
}
