/**
 * Deterministic, disjoint train/test problem streams for generated tasks.
 *
 * Problem `index` of a split is drawn from its own Rng, seeded by hashing (task seed, split,
 * index, attempt), so any example can be produced on its own (a worker needs problem 12_345 without
 * generating the 12_344 before it) and a resumed run sees the same data. Disjointness is by
 * text: a prompt belongs to the test split when a hash of (seed, prompt) falls below
 * `testFraction`, else to train. A draw whose prompt belongs to the other split is rejected and
 * the next attempt is drawn, so the same prompt text can never appear in both splits, however
 * small the problem space.
 */
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import type { Split, TaskExample } from './types.js';

/** murmur3's 32-bit finaliser: a cheap bijective avalanche on uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Order-sensitive hash of uint32 words. */
export function hashWords(...words: number[]): number {
  let h = 0x9747b28c;
  for (const w of words) h = fmix32((h ^ fmix32(w >>> 0)) + 0x9e3779b9);
  return h;
}

/** FNV-1a over the UTF-16 code units of `text`, finished with fmix32, salted with `seed`. */
export function hashText(seed: number, text: string): number {
  let h = (0x811c9dc5 ^ fmix32(seed >>> 0)) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

const SPLIT_ID: Record<Split, number> = { train: 1, test: 2 };

/** The Rng of one draw; `index` may be any non-negative safe integer. */
export function exampleRng(seed: number, split: Split, index: number, attempt: number): Rng {
  const lo = index % 4294967296;
  const hi = Math.floor(index / 4294967296);
  const base = hashWords(seed, SPLIT_ID[split], lo, hi, attempt);
  return new Rng([hashWords(base, 1), hashWords(base, 2), hashWords(base, 3), hashWords(base, 4)]);
}

/** True when `prompt` belongs to the test split. */
export function isTestPrompt(seed: number, prompt: string, testFraction: number): boolean {
  return hashText(seed, prompt) / 4294967296 < testFraction;
}

export interface DrawOptions {
  seed: number;
  testFraction: number; // share of prompt texts reserved for the test split, in (0, 1)
  maxAttempts: number; // draws before giving up (the knobs leave too few problems)
  taskName: string;
}

/**
 * Draws example `index` of `split`: calls `generate` with fresh per-attempt Rngs until it returns
 * an example (null = reject this draw, e.g. an answer too long) whose prompt lies in `split`.
 */
export function drawExample(
  split: Split,
  index: number,
  opts: DrawOptions,
  generate: (rng: Rng) => TaskExample | null,
): TaskExample {
  if (split !== 'train' && split !== 'test') {
    throw new GrpoError('GRPO_ERR_TASK_SPLIT', `split is ${JSON.stringify(split)}; use "train" or "test"`);
  }
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new GrpoError('GRPO_ERR_TASK_INDEX', `example index is ${index}; it must be a non-negative safe integer`);
  }
  const wantTest = split === 'test';
  for (let attempt = 0; attempt < opts.maxAttempts; attempt++) {
    const ex = generate(exampleRng(opts.seed, split, index, attempt));
    if (ex !== null && isTestPrompt(opts.seed, ex.prompt, opts.testFraction) === wantTest) return ex;
  }
  throw new GrpoError(
    'GRPO_ERR_TASK_EXHAUSTED',
    `${opts.taskName}: no ${split} example found for index ${index} in ${opts.maxAttempts} draws; ` +
      'the task options leave too few problems (raise the digits/depth or the answer length limit)',
  );
}
