/**
 * The Countdown game, generated under a grammar so that every sample is a valid expression.
 *
 *   prompt      "3,7,25,4>47:"   the numbers, ">", the target, ":"
 *   completion  "3*25-7*4"       an expression over the given numbers with + - * / and
 *                                parentheses, no spaces; the model ends it with EOS
 *
 * Number use: with use_all (the default, as in the issue and the usual Countdown RL setups) every
 * given number is used exactly once; with use_all false each is used at most once. A number
 * given twice may be used twice. Values are exact rationals, so "7/2*2" is 7; an expression that
 * divides by zero has no value (it scores 0 on reached and distance).
 *
 * The grammar (countdownMachine, through ./grammar.ts) admits exactly the expressions that:
 * spell only numbers still unused (character by character: "2" may continue to "25" when 25 is
 * unused), alternate operands and binary operators (no unary minus), balance parentheses, put
 * at least one operator at the top level of every parenthesised group (so "(3)" and "((3+4))"
 * are not words, which bounds the length: pairs <= operators), and end only when complete (all
 * numbers used under use_all). It never leads into a dead end: "(" and operators are allowed
 * only while enough unused numbers remain to close every open group. The longest word has
 * count * digits(max_number) + 3 * (count - 1) characters, which is maxCompletionTokens - 1.
 *
 * The grammar depends on the prompt's numbers: Task.grammar reads them from each row's prompt.
 *
 * Problems: count numbers drawn uniformly from [min_number, max_number]; the target is the value
 * of a random expression over them (all of them under use_all, else a random subset of at least
 * two), redrawn until it is an integer in [min_target, max_target], so every problem is solvable.
 * The SFT target is the first solution a fixed-order exhaustive search finds (solveCountdown).
 *
 * Rewards (weights are defaults):
 *   reached   1    1 when the completion is valid and its value equals the target
 *   distance  0.2  shaped: max(0, 1 - |value - target| / target) for a valid completion, else 0
 *   format    0    1 when the completion is a valid expression over the numbers (under the
 *                  grammar every sample is; useful when sampling without it)
 */
import { z } from 'zod';
import { GrpoError } from '../shared/errors.js';
import type { Tokenizer } from '../model/types.js';
import type { Rng } from '../shared/rng.js';
import { machineAccepts, rowGrammarHook, type CharMachine, type CharSet } from './grammar.js';
import { parseTaskOptions } from './options.js';
import { Rational } from './rational.js';
import { drawExample } from './split.js';
import type { GrammarHook, Split, Task, TaskExample, TaskFactory, TaskReward, TaskSpec } from './types.js';
import { solveCountdown, randomCountdownExpression } from './countdown-solver.js';

export { solveCountdown } from './countdown-solver.js';

export const COUNTDOWN_ALPHABET = '0123456789+-*/(),>:';
const DIGITS = '0123456789';
const OPERATORS = '+-*/';

const OptionsSchema = z
  .strictObject({
    min_count: z.number().int().min(1).max(5).default(3), // numbers per problem
    max_count: z.number().int().min(1).max(5).default(4),
    min_number: z.number().int().min(1).max(100).default(1), // range of the given numbers
    max_number: z.number().int().min(1).max(100).default(25),
    min_target: z.number().int().min(1).max(100_000).default(1),
    max_target: z.number().int().min(1).max(100_000).default(100),
    use_all: z.boolean().default(true), // every number exactly once (true) or at most once (false)
    test_fraction: z.number().gt(0).lt(1).default(0.1), // share of prompt texts held out
  })
  .refine((o) => o.min_count <= o.max_count, { message: 'min_count must be <= max_count', path: ['min_count'] })
  .refine((o) => o.min_number <= o.max_number, { message: 'min_number must be <= max_number', path: ['min_number'] })
  .refine((o) => o.min_target <= o.max_target, { message: 'min_target must be <= max_target', path: ['min_target'] });

export type CountdownOptions = z.infer<typeof OptionsSchema>;
export const COUNTDOWN_OPTION_KEYS = Object.keys(OptionsSchema.shape) as (keyof CountdownOptions)[];

/** What travels with each prompt. */
export interface CountdownMeta {
  numbers: number[];
  target: number;
  useAll: boolean;
}

// ---- the grammar ----

interface CountdownState {
  readonly remaining: readonly string[]; // digit strings of the numbers still unused (a multiset)
  readonly left: number; // numbers that may still be used
  readonly open: readonly boolean[]; // per open "(", innermost last: has an operator at its level
  readonly afterOperand: boolean; // a complete operand precedes: an operator, ")" or the end follows
  readonly partial: string; // digits of the number being spelled
}

export interface CountdownGrammarOptions {
  useAll: boolean; // every number exactly once (true) or at most once
}

/** Whether some unused number starts with `prefix`, and whether `prefix` itself is one. */
function numberStatus(s: CountdownState, prefix: string): { prefix: boolean; complete: boolean } {
  return { prefix: s.remaining.some((n) => n.startsWith(prefix)), complete: s.remaining.includes(prefix) };
}

/** The Countdown grammar over `numbers` (see the file comment): a char machine for ./grammar.ts. */
export function countdownMachine(numbers: readonly number[], opts: CountdownGrammarOptions): CharMachine<CountdownState> {
  const useAll = opts.useAll;
  const noOp = (s: CountdownState): number => s.open.reduce((n, hasOp) => n + (hasOp ? 0 : 1), 0);
  const consume = (s: CountdownState): CountdownState => {
    const i = s.remaining.indexOf(s.partial);
    const remaining = [...s.remaining.slice(0, i), ...s.remaining.slice(i + 1)];
    return { remaining, left: s.left - 1, open: s.open, afterOperand: true, partial: '' };
  };
  const ends = (s: CountdownState): boolean => s.afterOperand && s.open.length === 0 && (!useAll || s.left === 0);
  const allowed = (s: CountdownState): Set<string> => {
    const out = new Set<string>();
    if (s.partial !== '') {
      for (const d of DIGITS) if (numberStatus(s, s.partial + d).prefix) out.add(d);
      if (numberStatus(s, s.partial).complete) for (const c of allowed(consume(s))) out.add(c);
      return out;
    }
    const depth = s.open.length;
    if (s.afterOperand) {
      // an operator at the innermost level satisfies that level's need for one
      const after = noOp(s) - (depth > 0 && !s.open[depth - 1] ? 1 : 0);
      if (s.left >= 1 + after) for (const op of OPERATORS) out.add(op);
      if (depth > 0 && s.open[depth - 1]) out.add(')');
      return out;
    }
    // an operand: a new group needs its own operator later, so one more number
    if (s.left >= 2 + noOp(s)) out.add('(');
    for (const d of DIGITS) if (numberStatus(s, d).prefix) out.add(d);
    return out;
  };
  const accepts = (s: CountdownState): boolean =>
    s.partial === '' ? ends(s) : numberStatus(s, s.partial).complete && ends(consume(s));
  const step = (s: CountdownState, c: string): CountdownState => {
    if (DIGITS.includes(c)) return { ...s, partial: s.partial + c };
    const base = s.partial !== '' ? consume(s) : s;
    const depth = base.open.length;
    if (c === '(') return { ...base, open: [...base.open, false] };
    if (c === ')') return { ...base, open: base.open.slice(0, -1), afterOperand: true };
    const open = depth > 0 && !base.open[depth - 1] ? [...base.open.slice(0, -1), true] : base.open;
    return { ...base, open, afterOperand: false };
  };
  return {
    unit: 'char',
    start: () => ({
      remaining: numbers.map(String),
      left: numbers.length,
      open: [],
      afterOperand: false,
      partial: '',
    }),
    allowed: (s): CharSet => allowed(s),
    step,
    accepts,
  };
}

// ---- reading prompts and completions ----

const PROMPT = /^(\d+(?:,\d+)*)>(\d+):$/;

export function countdownPrompt(numbers: readonly number[], target: number): string {
  return `${numbers.join(',')}>${target}:`;
}

/** The numbers and target of a prompt, or null when `prompt` is not a Countdown prompt. */
export function parseCountdownPrompt(prompt: string): { numbers: number[]; target: number } | null {
  const m = PROMPT.exec(prompt);
  return m ? { numbers: m[1].split(',').map(Number), target: Number(m[2]) } : null;
}

/** Value of a grammar-valid expression (precedence: * / over + -, left to right); null on x/0. */
function valueOf(text: string): Rational | null {
  let i = 0;
  const atom = (): Rational => {
    if (text[i] === '(') {
      i++;
      const v = sum();
      i++; // ")"
      return v;
    }
    const start = i;
    while (i < text.length && DIGITS.includes(text[i])) i++;
    return Rational.of(BigInt(text.slice(start, i)));
  };
  const product = (): Rational => {
    let v = atom();
    while (text[i] === '*' || text[i] === '/') {
      const op = text[i++];
      const r = atom();
      v = op === '*' ? v.mul(r) : v.div(r);
    }
    return v;
  };
  const sum = (): Rational => {
    let v = product();
    while (text[i] === '+' || text[i] === '-') {
      const op = text[i++];
      const r = product();
      v = op === '+' ? v.add(r) : v.sub(r);
    }
    return v;
  };
  try {
    return sum();
  } catch {
    return null; // division by zero (Rational throws GRPO_ERR_DIVISION_BY_ZERO)
  }
}

export interface CountdownScore {
  valid: boolean; // a word of the grammar over the meta's numbers
  value: Rational | null; // null when invalid or dividing by zero
}

function metaOf(meta: unknown): CountdownMeta {
  const m = meta as Partial<CountdownMeta> | null;
  const ok =
    m !== null &&
    typeof m === 'object' &&
    Array.isArray(m.numbers) &&
    m.numbers.length > 0 &&
    m.numbers.every((n) => Number.isInteger(n) && n >= 0) &&
    Number.isInteger(m.target) &&
    (m.target as number) >= 1 &&
    typeof m.useAll === 'boolean';
  if (!ok) {
    throw new GrpoError('GRPO_ERR_TASK_META', `countdown: meta must be { numbers: int[], target: int >= 1, useAll: boolean }, got ${JSON.stringify(meta)}`);
  }
  return m as CountdownMeta;
}

export function evaluateCountdown(completion: string, meta: unknown): CountdownScore {
  const m = metaOf(meta);
  const valid = machineAccepts(countdownMachine(m.numbers, { useAll: m.useAll }), completion);
  return { valid, value: valid ? valueOf(completion) : null };
}

export function reachedReward(completion: string, meta: unknown): number {
  const { value } = evaluateCountdown(completion, meta);
  return value !== null && value.equals(Rational.of(metaOf(meta).target)) ? 1 : 0;
}

/** max(0, 1 - |value - target| / target), 0 for invalid or undefined values. */
export function distanceReward(completion: string, meta: unknown): number {
  const { value } = evaluateCountdown(completion, meta);
  if (value === null) return 0;
  const target = Rational.of(metaOf(meta).target);
  return Math.max(0, 1 - value.sub(target).abs().div(target).toNumber());
}

export function countdownFormatReward(completion: string, meta: unknown): number {
  return evaluateCountdown(completion, meta).valid ? 1 : 0;
}

const REWARDS: readonly TaskReward[] = Object.freeze([
  { name: 'reached', weight: 1, fn: (_p: string, c: string, meta: unknown) => reachedReward(c, meta) },
  { name: 'distance', weight: 0.2, fn: (_p: string, c: string, meta: unknown) => distanceReward(c, meta) },
  { name: 'format', weight: 0, fn: (_p: string, c: string, meta: unknown) => countdownFormatReward(c, meta) },
]);

// ---- the task ----

export function createCountdown(spec: TaskSpec): Task {
  if (!Number.isInteger(spec.seed)) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `countdown: seed is ${spec.seed}; it must be an integer`);
  }
  const o = parseTaskOptions('countdown', OptionsSchema, spec.options, COUNTDOWN_OPTION_KEYS);
  const numberDigits = String(o.max_number).length;
  const maxPromptChars = o.max_count * (numberDigits + 1) + String(o.max_target).length + 1;
  const maxCompletionTokens = o.max_count * numberDigits + 3 * (o.max_count - 1) + 1; // + EOS
  const draw = { seed: spec.seed, testFraction: o.test_fraction, maxAttempts: 10_000, taskName: 'countdown' };

  const generate = (rng: Rng): TaskExample | null => {
    const count = rng.int(o.min_count, o.max_count);
    const numbers = Array.from({ length: count }, () => rng.int(o.min_number, o.max_number));
    const made = randomCountdownExpression(rng, numbers, o.use_all);
    if (made === null || !Number.isInteger(made.value) || made.value < o.min_target || made.value > o.max_target) return null;
    const target = made.value;
    const solution = solveCountdown(numbers, target, { useAll: o.use_all }) ?? made.text;
    const meta: CountdownMeta = { numbers, target, useAll: o.use_all };
    return { prompt: countdownPrompt(numbers, target), target: solution, meta };
  };

  const grammar = (tokenizer: Tokenizer, prompts: readonly string[]): GrammarHook =>
    rowGrammarHook((row) => {
      const parsed = row >= 0 && row < prompts.length ? parseCountdownPrompt(prompts[row]) : null;
      if (parsed === null) {
        throw new GrpoError(
          'GRPO_ERR_GRAMMAR_INPUT',
          `countdown grammar: row ${row} has prompt ${JSON.stringify(prompts[row])} of ${prompts.length}; give one Countdown prompt ("3,7,25>46:") per sampler row`,
        );
      }
      return countdownMachine(parsed.numbers, { useAll: o.use_all });
    }, tokenizer);

  return Object.freeze({
    name: 'countdown',
    seed: spec.seed,
    options: o,
    alphabet: COUNTDOWN_ALPHABET,
    maxCompletionTokens,
    maxPromptChars,
    example: (split: Split, index: number) => drawExample(split, index, draw, generate),
    rewards: REWARDS,
    isCorrect: (_prompt: string, completion: string, meta: unknown) => reachedReward(completion, meta) === 1,
    grammar,
  });
}

export const countdownTask: TaskFactory = Object.freeze({
  name: 'countdown',
  description: 'reach a target with the given numbers, + - * / and parentheses, under a grammar (knobs: ' + COUNTDOWN_OPTION_KEYS.join(', ') + ')',
  create: createCountdown,
});
