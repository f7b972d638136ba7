/**
 * Heuristic reward components for text: cheap, deterministic scores in [0, 1] that need no model.
 * Each is a pure function; a task (./keywords.ts) or a user's reward module wires them up as named,
 * weighted rewards, so each is logged on its own and `reward_weights` can tune or drop it.
 *
 *   keywordScore      share of the wanted keywords the text uses as whole words (relevance)
 *   lengthScore       1 at the target word count, falling linearly to 0 at 0 or twice the target
 *   repetitionScore   share of distinct word bigrams (1 = nothing repeated; "fox fox fox" scores low)
 *   formatScore       1 when the text matches a regular expression, else 0
 *   groupDiversity    per completion, 1 - its mean word-set Jaccard similarity to the others of its
 *                     group (identical completions score 0; a group of one scores 1)
 */

/** Lower-case words: runs of letters, digits and apostrophes. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}

export function keywordScore(text: string, keywords: readonly string[]): number {
  if (keywords.length === 0) return 1;
  const present = new Set(words(text));
  return keywords.filter((k) => present.has(k.toLowerCase())).length / keywords.length;
}

/** max(0, 1 - |n - target| / target) for a text of n words; target >= 1. */
export function lengthScore(text: string, targetWords: number): number {
  const n = words(text).length;
  return Math.max(0, 1 - Math.abs(n - targetWords) / targetWords);
}

export function repetitionScore(text: string): number {
  const w = words(text);
  if (w.length === 0) return 0;
  if (w.length === 1) return 1;
  const bigrams = w.slice(1).map((x, i) => `${w[i]} ${x}`);
  return new Set(bigrams).size / bigrams.length;
}

export function formatScore(text: string, pattern: RegExp): number {
  pattern.lastIndex = 0; // a /g or /y pattern keeps state between test() calls
  return pattern.test(text) ? 1 : 0;
}

function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let common = 0;
  for (const x of a) if (b.has(x)) common++;
  return common / (a.size + b.size - common);
}

/** One score per completion, in order (see the file comment). O(n^2) in the group size. */
export function groupDiversity(completions: readonly string[]): number[] {
  const sets = completions.map((c) => new Set(words(c)));
  const n = sets.length;
  if (n < 2) return sets.map(() => 1);
  return sets.map((s, i) => {
    let sum = 0;
    for (let j = 0; j < n; j++) if (j !== i) sum += jaccard(s, sets[j]);
    return 1 - sum / (n - 1);
  });
}
