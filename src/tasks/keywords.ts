/**
 * The `keywords` task: write one short sentence that uses the given keywords. A text task scored
 * only by heuristic components (./heuristic.ts), after the seeds that trained reply generators on
 * a composite heuristic reward (relevance, length, diversity, format ...).
 *
 *   prompt      "fox moon:"                       the keywords, space-separated, then ":"
 *   completion  "the quiet fox hears the moon."   lower-case words, one sentence, ending in "."
 *
 * The corpus is generated, not shipped as a file (so it is the same from src/ and dist/): the
 * keywords are drawn from NOUNS; the SFT target places them in the template
 *   1 keyword   "the <adj> <k1> <verb> the <noun>."
 *   2 keywords  "the <adj> <k1> <verb> the <k2>."
 *   3 keywords  "the <adj> <k1> <verb> the <k2> and the <k3>."
 * with the other slots drawn from ADJECTIVES, VERBS and NOUNS. 24 nouns give 552 ordered pairs.
 *
 * Rewards (default weights; reward_weights overrides them by name):
 *   keywords    1    share of the prompt's keywords used as whole words
 *   length      0.2  closeness to target_words words (default: the template's length)
 *   repetition  0.2  share of distinct word bigrams
 *   format      0.2  matches the `format` regular expression
 *   diversity   0.2  group reward: 1 - mean word-set Jaccard similarity to the group's others
 * isCorrect (eval accuracy): every keyword used, and the format matches.
 */
import { z } from 'zod';
import { GrpoError } from '../shared/errors.js';
import type { Rng } from '../shared/rng.js';
import { formatScore, groupDiversity, keywordScore, lengthScore, repetitionScore } from './heuristic.js';
import { parseTaskOptions } from './options.js';
import { groupReward } from './reward-module.js';
import { drawExample } from './split.js';
import type { Split, Task, TaskExample, TaskFactory, TaskReward, TaskSpec } from './types.js';

export const NOUNS = Object.freeze([
  'cat', 'dog', 'fox', 'bird', 'fish', 'tree', 'moon', 'sun', 'river', 'stone', 'ship', 'king',
  'child', 'wolf', 'horse', 'rose', 'bear', 'frog', 'lamp', 'road', 'hill', 'star', 'boat', 'queen',
]);
export const ADJECTIVES = Object.freeze(['red', 'old', 'small', 'quiet', 'bright', 'dark', 'happy', 'cold']);
export const VERBS = Object.freeze(['sees', 'likes', 'finds', 'follows', 'chases', 'hears', 'paints', 'keeps']);

export const KEYWORDS_ALPHABET = 'abcdefghijklmnopqrstuvwxyz .,:';

const OptionsSchema = z.strictObject({
  keywords: z.number().int().min(1).max(3).default(2), // keywords per prompt
  target_words: z.number().int().min(1).max(64).nullable().default(null), // null: the template's length (6, or 9 for 3 keywords)
  format: z.string().min(1).default('^[a-z]+( [a-z]+)*\\.$'), // one lower-case sentence ending in "."
  test_fraction: z.number().gt(0).lt(1).default(0.1), // share of prompt texts held out
});

export type KeywordsOptions = z.infer<typeof OptionsSchema>;
export const KEYWORDS_OPTION_KEYS = Object.keys(OptionsSchema.shape) as (keyof KeywordsOptions)[];

/** What travels with each prompt. */
export interface KeywordsMeta {
  keywords: string[];
}

function keywordsOf(meta: unknown): string[] {
  const k = (meta as Partial<KeywordsMeta> | null)?.keywords;
  if (!Array.isArray(k) || !k.every((w) => typeof w === 'string')) {
    throw new GrpoError('GRPO_ERR_TASK_META', `keywords: meta must be { keywords: string[] }, got ${JSON.stringify(meta)}`);
  }
  return k;
}

/** The SFT target for `keywords` (see the file comment). */
function sentence(rng: Rng, keywords: readonly string[]): string {
  const [k1, k2, k3] = keywords;
  const other = k2 ?? rng.pick(NOUNS.filter((n) => n !== k1));
  const tail = k3 === undefined ? '' : ` and the ${k3}`;
  return `the ${rng.pick(ADJECTIVES)} ${k1} ${rng.pick(VERBS)} the ${other}${tail}.`;
}

function longest(list: readonly string[]): number {
  return Math.max(...list.map((w) => w.length));
}

function compileFormat(source: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `task keywords: format ${JSON.stringify(source)} is not a valid regular expression: ${(err as Error).message}`);
  }
}

export function createKeywords(spec: TaskSpec): Task {
  if (!Number.isInteger(spec.seed)) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `keywords: seed is ${spec.seed}; it must be an integer`);
  }
  const o = parseTaskOptions('keywords', OptionsSchema, spec.options, KEYWORDS_OPTION_KEYS);
  const format = compileFormat(o.format);
  const targetWords = o.target_words ?? (o.keywords === 3 ? 9 : 6);
  const draw = { seed: spec.seed, testFraction: o.test_fraction, maxAttempts: 10_000, taskName: 'keywords' };

  const generate = (rng: Rng): TaskExample => {
    const pool = [...NOUNS];
    const keywords: string[] = [];
    for (let i = 0; i < o.keywords; i++) keywords.push(pool.splice(rng.int(0, pool.length - 1), 1)[0]);
    const meta: KeywordsMeta = { keywords };
    return { prompt: `${keywords.join(' ')}:`, target: sentence(rng, keywords), meta };
  };

  const rewards: readonly TaskReward[] = Object.freeze([
    { name: 'keywords', weight: 1, fn: (_p: string, c: string, meta: unknown) => keywordScore(c, keywordsOf(meta)) },
    { name: 'length', weight: 0.2, fn: (_p: string, c: string) => lengthScore(c, targetWords) },
    { name: 'repetition', weight: 0.2, fn: (_p: string, c: string) => repetitionScore(c) },
    { name: 'format', weight: 0.2, fn: (_p: string, c: string) => formatScore(c, format) },
    groupReward({ name: 'diversity', weight: 0.2, fn: (_p, completions) => groupDiversity(completions) }),
  ]);

  const n = longest(NOUNS);
  // "the " adj " " noun " " verb " the " noun [" and the " noun] "."
  const maxChars = 4 + longest(ADJECTIVES) + 1 + n + 1 + longest(VERBS) + 5 + n + (o.keywords === 3 ? 9 + n : 0) + 1;
  return Object.freeze({
    name: 'keywords',
    seed: spec.seed,
    options: o,
    alphabet: KEYWORDS_ALPHABET,
    maxCompletionTokens: maxChars + 1, // + EOS
    maxPromptChars: o.keywords * (n + 1),
    example: (split: Split, index: number) => drawExample(split, index, draw, generate),
    rewards,
    isCorrect: (_p: string, c: string, meta: unknown) => keywordScore(c, keywordsOf(meta)) === 1 && formatScore(c, format) === 1,
  });
}

export const keywordsTask: TaskFactory = Object.freeze({
  name: 'keywords',
  description: 'one sentence that uses the given keywords, scored by heuristic components (knobs: ' + KEYWORDS_OPTION_KEYS.join(', ') + ')',
  create: createKeywords,
});
