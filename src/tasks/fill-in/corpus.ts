/**
 * The fill-in task's corpus and masking, generated in code (nothing to ship or download): short
 * English-like sentences from a small grammar over fixed word lists, e.g.
 *
 *   "the shy fox chases the old hen."      subject, transitive verb, object
 *   "the duck swims by the river."         subject, intransitive verb, place or adverb
 *
 * The grammar is fixed (the task seed only picks which sentences appear), so one judge trained on
 * it serves every seed. Words are chosen so that a masked letter is usually, not always, decided
 * by the word list and the word's slot ("c_w" is only "cow"; "b_g" in an adjective slot is "big",
 * in a noun slot "bug"): a model has to learn the vocabulary and where each word may stand.
 *
 * Masking replaces letters (never spaces or the period) with MASK_CHAR: round(mask_rate * letters)
 * of them, at least 1 and at most max_masks, at distinct positions drawn uniformly.
 */
import { GrpoError } from '../../shared/errors.js';
import type { Rng } from '../../shared/rng.js';
import type { CharMachine } from '../grammar.js';

export const MASK_CHAR = '_';
export const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
/** Ends a fill-in prompt: the masked text, then this. */
export const PROMPT_END = '=';
/** Every character of prompts and completions (the corpus uses lowercase letters, space and "."). */
export const FILL_IN_ALPHABET = `${LETTERS} .${MASK_CHAR}${PROMPT_END}`;

const ADJECTIVES = ['big', 'old', 'red', 'shy', 'tall', 'calm', 'dark', 'wild', 'small', 'quick', 'brave', 'quiet'];
const NOUNS = ['cat', 'dog', 'fox', 'owl', 'hen', 'bee', 'cow', 'pig', 'bug', 'bear', 'frog', 'duck', 'goat', 'mole', 'seal', 'wolf', 'crab', 'lamb'];
const TRANSITIVE = ['sees', 'hears', 'helps', 'likes', 'finds', 'meets', 'chases', 'follows', 'watches', 'greets'];
const INTRANSITIVE = ['runs', 'naps', 'sings', 'hides', 'swims', 'jumps', 'waits', 'plays'];
const ADVERBS = ['fast', 'well', 'late', 'again', 'alone', 'today', 'softly'];
const PLACES = ['in the barn', 'near the pond', 'by the river', 'on the hill', 'under the tree'];

/** One sentence of the grammar; each of the four shapes is equally likely. At most MAX_SENTENCE_CHARS (46). */
export function corpusSentence(rng: Rng): string {
  const np = (withAdjective: boolean) => (withAdjective ? `the ${rng.pick(ADJECTIVES)} ${rng.pick(NOUNS)}` : `the ${rng.pick(NOUNS)}`);
  switch (rng.int(0, 3)) {
    case 0:
      return `${np(rng.next() < 0.5)} ${rng.pick(TRANSITIVE)} ${np(rng.next() < 0.5)}.`;
    case 1:
      return `${np(rng.next() < 0.5)} ${rng.pick(INTRANSITIVE)} ${rng.pick(ADVERBS)}.`;
    case 2:
      return `${np(rng.next() < 0.5)} ${rng.pick(INTRANSITIVE)} ${rng.pick(PLACES)}.`;
    default:
      return `${np(false)} ${rng.pick(TRANSITIVE)} ${np(true)} ${rng.pick(PLACES)}.`;
  }
}

/** Longest sentence corpusSentence can produce, in characters (for window and prompt bounds). */
export const MAX_SENTENCE_CHARS = (() => {
  const longest = (words: readonly string[]) => Math.max(...words.map((w) => w.length));
  const np = 'the '.length + longest(NOUNS);
  const npAdj = np + 1 + longest(ADJECTIVES);
  return Math.max(
    2 * npAdj + longest(TRANSITIVE) + 3, // shape 0: two spaces and "."
    npAdj + longest(INTRANSITIVE) + Math.max(longest(ADVERBS), longest(PLACES)) + 3, // shapes 1, 2
    np + longest(TRANSITIVE) + npAdj + longest(PLACES) + 4, // shape 3
  );
})();

export interface Masked {
  masked: string; // the text with MASK_CHAR at the masked positions
  answer: string; // the masked letters in text order
}

/** Masks letters of `text` (see the file comment). */
export function maskText(rng: Rng, text: string, maskRate: number, maxMasks: number): Masked {
  const letters: number[] = [];
  for (let i = 0; i < text.length; i++) if (LETTERS.includes(text[i])) letters.push(i);
  const count = Math.min(letters.length, maxMasks, Math.max(1, Math.round(maskRate * letters.length)));
  // partial Fisher-Yates: the first `count` entries become a uniform sample without replacement
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, letters.length - 1);
    [letters[i], letters[j]] = [letters[j], letters[i]];
  }
  const positions = letters.slice(0, count).sort((a, b) => a - b);
  const chars = [...text];
  for (const p of positions) chars[p] = MASK_CHAR;
  return { masked: chars.join(''), answer: positions.map((p) => text[p]).join('') };
}

/**
 * Whether `text` is a filling of `masked`: the same length, the same character at every unmasked
 * position and a lowercase letter at every masked one.
 */
export function isFillingOf(masked: string, text: string): boolean {
  if (text.length !== masked.length) return false;
  for (let i = 0; i < masked.length; i++) {
    if (masked[i] === MASK_CHAR ? !LETTERS.includes(text[i]) : text[i] !== masked[i]) return false;
  }
  return true;
}

/**
 * The grammar of the fillings of `masked` (a char machine for ./grammar.ts): the state is the
 * number of characters written; a mask admits any letter, every other position its own
 * character, and EOS comes exactly at the masked text's length.
 */
export function fillingMachine(masked: string): CharMachine<number> {
  return {
    start: () => 0,
    allowed: (i) => (i >= masked.length ? '' : masked[i] === MASK_CHAR ? LETTERS : masked[i]),
    step: (i) => i + 1,
    accepts: (i) => i === masked.length,
  };
}

/**
 * How close `text` is to being a filling of `masked`: 1 - d / |masked|, floored at 0, where d is
 * the edit distance (insertions, deletions, substitutions of one character each) between them
 * with every mask matching any letter at no cost. 1 exactly when isFillingOf(masked, text).
 * O(|masked| * |text|) time, O(|text|) memory.
 */
export function faithfulness(masked: string, text: string): number {
  const n = text.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j); // distances from the empty prefix of masked
  for (let i = 1; i <= masked.length; i++) {
    const cur = [i];
    const m = masked[i - 1];
    for (let j = 1; j <= n; j++) {
      const same = m === MASK_CHAR ? LETTERS.includes(text[j - 1]) : m === text[j - 1];
      cur.push(Math.min(prev[j - 1] + (same ? 0 : 1), prev[j] + 1, cur[j - 1] + 1));
    }
    prev = cur;
  }
  return Math.max(0, 1 - prev[n] / masked.length);
}

/** The masked text of a fill-in prompt (the prompt without its PROMPT_END). */
export function maskedOfPrompt(prompt: string): string {
  if (!prompt.endsWith(PROMPT_END)) {
    throw new GrpoError('GRPO_ERR_TASK_META', `fill-in: a prompt ends with ${JSON.stringify(PROMPT_END)}, got ${JSON.stringify(prompt.slice(-20))}`);
  }
  return prompt.slice(0, -PROMPT_END.length);
}
