/**
 * Final-answer extraction for math word problems, and exact comparison of the numbers.
 *
 * Where the answer is taken from, first match wins (the last occurrence of that marker, since
 * models restate and correct themselves and the last statement is the one they commit to):
 *
 *   <answer>42</answer>     the DeepSeek-R1 / seeds 003-004 format
 *   \boxed{42}              Qwen-Math and MATH style; braces may nest (\boxed{\frac{1}{2}})
 *   #### 42                 GSM8K's reference format, to the end of that line
 *
 * Inside the marker the text is read as a number after dropping what carries no value: `$`,
 * `\$`, `\!`, `\,`, a trailing `.`, `%`, spaces, LaTeX `\text{...}` units, and `{}` around a
 * whole number. When the whole text is not a number, the last number in it is the answer
 * ("<answer>She has 42 apples.</answer>" -> 42). Numbers are exact rationals:
 *
 *   42, -7, +3, 1,234,567 (commas only in groups of three), 3.50 (= 7/2), .5, -0.25,
 *   3/4, -6/8 (= -3/4), \frac{3}{4}, \dfrac{-3}{4}, \tfrac34 (single-digit shorthand), 1e3 is NOT
 *   read (not how grade-school answers are written, and "2e" in text would become a number)
 *
 * Two answers are equal when their values are equal: "0.5", "1/2" and "\frac{2}{4}" all match.
 */
import { Rational } from '../rational.js';

export type AnswerSource = 'answer_tag' | 'boxed' | 'hashes';

export interface ExtractedAnswer {
  /** The text inside the marker, trimmed. */
  text: string;
  source: AnswerSource;
  /** Its value, or null when the text holds no number. */
  value: Rational | null;
}

const ANSWER_TAG = /<answer>([\s\S]*?)<\/answer>/g;
const HASHES = /####\s*([^\n]*)/g;

/** The last match's first group of a global regex, or null. */
function lastGroup(re: RegExp, text: string): string | null {
  let last: string | null = null;
  for (const m of text.matchAll(re)) last = m[1];
  return last;
}

/**
 * The content of the last `\boxed{...}` (or `\fbox{...}`), braces balanced; null when there is
 * none or its braces never close (a completion cut at max_gen_len).
 */
export function lastBoxed(text: string): string | null {
  const re = /\\(?:boxed|fbox)\s*\{/g;
  let found: string | null = null;
  for (const m of text.matchAll(re)) {
    const start = m.index + m[0].length;
    let depth = 1;
    let i = start;
    for (; i < text.length && depth > 0; i++) {
      if (text[i] === '{') depth++;
      else if (text[i] === '}') depth--;
    }
    if (depth === 0) found = text.slice(start, i - 1);
  }
  return found;
}

/** The final answer a completion (or a GSM8K reference solution) states, or null. */
export function extractAnswer(completion: string): ExtractedAnswer | null {
  const candidates: [AnswerSource, string | null][] = [
    ['answer_tag', lastGroup(ANSWER_TAG, completion)],
    ['boxed', lastBoxed(completion)],
    ['hashes', lastGroup(HASHES, completion)],
  ];
  for (const [source, raw] of candidates) {
    if (raw === null) continue;
    const text = raw.trim();
    // an <answer> that wraps a \boxed{} (both conventions at once) is read through the box
    const inner = source === 'answer_tag' ? (lastBoxed(text) ?? text) : text;
    return { text, source, value: parseAnswerNumber(inner) };
  }
  return null;
}

/** `\frac{a}{b}`, `\dfrac{a}{b}`, `\tfrac{a}{b}` and the shorthand `\frac34` as "a/b". */
function latexFractions(s: string): string {
  return s
    .replace(/\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}/g, '$1/$2')
    .replace(/\\[dt]?frac\s*(\d)(\d)/g, '$1/$2');
}

/** Strips what carries no value: currency, units in \text{}, LaTeX spacing, a final period. */
function normalise(raw: string): string {
  let s = raw.trim();
  s = s.replace(/\\text\s*\{[^{}]*\}/g, ' ').replace(/\\(?:mathrm|mbox)\s*\{[^{}]*\}/g, ' ');
  s = s.replace(/\\[!,;: ]/g, '').replace(/\\\$/g, '').replace(/\$/g, '').replace(/\\%|%/g, '');
  s = s.replace(/\\left|\\right/g, '');
  s = latexFractions(s);
  s = s.replace(/\s+/g, ' ').trim().replace(/\.$/, '').trim();
  // "{42}" or "(42)" around the whole answer
  while (/^\{[^{}]*\}$/.test(s)) s = s.slice(1, -1).trim();
  return s;
}

// A decimal or integer with an optional sign; commas only as thousands groups.
const NUM = String.raw`[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?`;
const SIMPLE = new RegExp(String.raw`^(${NUM})$`);
const FRACTION = new RegExp(String.raw`^\(?\s*(${NUM})\s*\)?\s*/\s*\(?\s*(${NUM})\s*\)?$`);
const ANY_NUMBER = /[-+\u2212]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*\/\s*[-+]?\d+(?:\.\d+)?)?/g;

/** "1,234.50" -> 2469/2; "-3" -> -3; null for an empty or malformed number. */
export function parseDecimal(text: string): Rational | null {
  const m = /^([-+\u2212]?)((?:\d{1,3}(?:,\d{3})+|\d+)?)(?:\.(\d+))?$/.exec(text.trim());
  if (!m || (m[2] === '' && m[3] === undefined)) return null;
  const intPart = m[2].replace(/,/g, '') || '0';
  const frac = m[3] ?? '';
  const num = BigInt(intPart + frac);
  const den = 10n ** BigInt(frac.length);
  return Rational.of(m[1] === '' || m[1] === '+' ? num : -num, den);
}

/** "a/b" with a and b decimals; null for a zero denominator. */
function parseFraction(a: string, b: string): Rational | null {
  const n = parseDecimal(a);
  const d = parseDecimal(b);
  if (n === null || d === null || d.isZero()) return null;
  return n.div(d);
}

/**
 * The exact value of an answer text: the whole text as one number when it is one, else the last
 * number inside it; null when it holds none.
 */
export function parseAnswerNumber(raw: string): Rational | null {
  const s = normalise(raw);
  if (SIMPLE.test(s)) return parseDecimal(s);
  const f = FRACTION.exec(s);
  if (f) return parseFraction(f[1], f[2]);
  let last: string | null = null;
  for (const m of s.matchAll(ANY_NUMBER)) last = m[0];
  if (last === null) return null;
  const slash = last.indexOf('/');
  return slash < 0 ? parseDecimal(last) : parseFraction(last.slice(0, slash).trim(), last.slice(slash + 1).trim());
}

/** True when both hold a number and the numbers are equal. */
export function answersEqual(a: Rational | null, b: Rational | null): boolean {
  return a !== null && b !== null && a.equals(b);
}

// The R1 format: one <think> block, then one <answer> block, nothing else but whitespace.
const FORMAT = /^\s*<think>([\s\S]*?)<\/think>\s*<answer>([\s\S]*?)<\/answer>\s*$/;

/**
 * 1 when the completion is exactly `<think>...</think>` then `<answer>...</answer>` (whitespace
 * between and around allowed, each tag once, a non-empty answer), else 0. As open-r1's and
 * DeepSeek-R1's format reward, but whitespace-tolerant: newlines around tags are a tokenizer
 * detail, not a format the policy should be pushed to.
 */
export function formatScore(completion: string): number {
  const m = FORMAT.exec(completion);
  if (!m) return 0;
  if (/<\/?think>|<\/?answer>/.test(m[1]) || /<\/?think>|<\/?answer>/.test(m[2])) return 0;
  return m[2].trim() === '' ? 0 : 1;
}
