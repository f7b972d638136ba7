/**
 * The arithmetic task: random expressions over + - * / with parentheses, answered exactly.
 *
 *   prompt      "(4-2)/-6="      the expression and "=", no spaces
 *   completion  "-1/3"           the exact value: an integer, or a fraction in lowest terms with
 *                                the sign on the numerator; the model ends it with EOS
 *
 * An expression of depth D is a tree of binary operations whose longest root-to-literal path
 * holds D operations ("3+4" has depth 1, "(4-2)/-6" depth 2); D is drawn uniformly from
 * [min_depth, max_depth]. Each literal has 1..max_digits digits (uniform), and is negative with
 * probability negative_rate (written "-6" right after an operator, as in the seed). Parentheses
 * appear only where precedence needs them, so "2*3+4" and "2*(3+4)" both occur. A divisor that
 * evaluates to zero is redrawn, so division by zero never happens, and problems whose answer is
 * longer than max_answer_chars characters are rejected (this bounds the completion length).
 *
 * Rewards (weights are defaults; the config's reward_weights override them by name):
 *   correct  1   1 when the completion is exactly the canonical answer text, else 0
 *   format   0   1 when the completion is a number (integer or a/b, optional leading "-"), else 0
 *   partial  0   closeness: max(0, 1 - |v - a| / (|a| + 1)) for the completion's value v and the
 *                answer a, exact rationals (1 when equal in value, "2/4" for "1/2" included;
 *                0 when v is off by more than |a| + 1, or the completion is not a number)
 */
import { z } from 'zod';
import { GrpoError } from '../shared/errors.js';
import type { Rng } from '../shared/rng.js';
import { parseTaskOptions } from './options.js';
import { Rational } from './rational.js';
import { drawExample } from './split.js';
import type { Task, TaskExample, TaskFactory, TaskReward, TaskSpec, Split } from './types.js';

const OP_CHARS = '+-*/';
type Op = '+' | '-' | '*' | '/';
const PRECEDENCE: Record<Op, number> = { '+': 1, '-': 1, '*': 2, '/': 2 };
const ATOM = 3; // literals and parenthesised groups bind tighter than any operator

export const ARITHMETIC_ALPHABET = '0123456789+-*/()=';

const OptionsSchema = z
  .strictObject({
    // Defaults: one operation on 1-2 digit literals. About 150k distinct prompts, so SFT cannot
    // memorise them and train and test share one distribution; the tiny model reaches 40-50%
    // held-out after 1500 SFT steps of batch 64 (~40 s on 2 cores), leaving GRPO room.
    max_digits: z.number().int().min(1).max(9).default(2), // digits per literal
    min_depth: z.number().int().min(1).max(6).default(1), // operations on the longest path
    max_depth: z.number().int().min(1).max(6).default(1),
    ops: z.string().regex(/^[+\-*/]+$/, 'must be a non-empty subset of "+-*/"').default(OP_CHARS),
    negative_rate: z.number().min(0).max(1).default(0.1), // share of literals written negative
    max_answer_chars: z.number().int().min(1).max(64).default(8), // longer answers are redrawn
    test_fraction: z.number().gt(0).lt(1).default(0.1), // share of prompt texts held out
  })
  .refine((o) => o.min_depth <= o.max_depth, { message: 'min_depth must be <= max_depth', path: ['min_depth'] });

export type ArithmeticOptions = z.infer<typeof OptionsSchema>;
export const ARITHMETIC_OPTION_KEYS = Object.keys(OptionsSchema.shape) as (keyof ArithmeticOptions)[];

/** What travels with each prompt: the canonical answer text. */
export interface ArithmeticMeta {
  answer: string;
}

interface Node {
  text: string;
  value: Rational;
  prec: number; // binding strength of the node's top-level operator (ATOM for literals)
}

function literal(rng: Rng, o: ArithmeticOptions): Node {
  const digits = rng.int(1, o.max_digits);
  const lo = digits === 1 ? 0 : 10 ** (digits - 1);
  const n = rng.int(lo, 10 ** digits - 1);
  const negative = n !== 0 && rng.next() < o.negative_rate;
  const value = negative ? -n : n;
  return { text: String(value), value: Rational.of(value), prec: ATOM };
}

function wrap(child: Node, parens: boolean): string {
  return parens ? `(${child.text})` : child.text;
}

/** A random expression of depth exactly `depth`, or null when no non-zero divisor was found. */
function expression(rng: Rng, depth: number, o: ArithmeticOptions, ops: Op[]): Node | null {
  if (depth === 0) return literal(rng, o);
  const op = rng.pick(ops);
  const deepLeft = rng.next() < 0.5; // which side carries depth - 1
  const other = rng.int(0, depth - 1);
  const left = expression(rng, deepLeft ? depth - 1 : other, o, ops);
  if (left === null) return null;
  let right: Node | null = null;
  for (let tries = 0; tries < 16; tries++) {
    right = expression(rng, deepLeft ? other : depth - 1, o, ops);
    if (right !== null && !(op === '/' && right.value.isZero())) break;
    right = null;
  }
  if (right === null) return null;
  const p = PRECEDENCE[op];
  // a - (b - c) and a / (b / c) need parentheses; a + (b - c) = a + b - c and a * (b / c) = a * b / c
  const rightParens = right.prec < p || (right.prec === p && (op === '-' || op === '/'));
  const text = `${wrap(left, left.prec < p)}${op}${wrap(right, rightParens)}`;
  const value =
    op === '+' ? left.value.add(right.value) : op === '-' ? left.value.sub(right.value) : op === '*' ? left.value.mul(right.value) : left.value.div(right.value);
  return { text, value, prec: p };
}

function answerOf(meta: unknown): string {
  const answer = (meta as Partial<ArithmeticMeta> | null)?.answer;
  if (typeof answer !== 'string' || Rational.parse(answer) === null) {
    throw new GrpoError('GRPO_ERR_TASK_META', `arithmetic: meta must be { answer: "<integer or a/b>" }, got ${JSON.stringify(meta)}`);
  }
  return answer;
}

export function isCorrectArithmetic(completion: string, meta: unknown): boolean {
  return completion === answerOf(meta);
}

export function formatReward(completion: string): number {
  return Rational.parse(completion) === null ? 0 : 1;
}

/** max(0, 1 - |v - a| / (|a| + 1)), see the file comment. */
export function partialReward(completion: string, meta: unknown): number {
  const a = Rational.parse(answerOf(meta))!;
  const v = Rational.parse(completion);
  if (v === null) return 0;
  const score = Rational.of(1).sub(v.sub(a).abs().div(a.abs().add(Rational.of(1))));
  return Math.max(0, score.toNumber());
}

const REWARDS: readonly TaskReward[] = Object.freeze([
  { name: 'correct', weight: 1, fn: (_p: string, c: string, meta: unknown) => (isCorrectArithmetic(c, meta) ? 1 : 0) },
  { name: 'format', weight: 0, fn: (_p: string, c: string) => formatReward(c) },
  { name: 'partial', weight: 0, fn: (_p: string, c: string, meta: unknown) => partialReward(c, meta) },
]);

export function createArithmetic(spec: TaskSpec): Task {
  if (!Number.isInteger(spec.seed)) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `arithmetic: seed is ${spec.seed}; it must be an integer`);
  }
  const o = parseTaskOptions('arithmetic', OptionsSchema, spec.options, ARITHMETIC_OPTION_KEYS);
  const ops = [...new Set(o.ops)] as Op[];
  const leaves = 2 ** o.max_depth;
  // literals (sign + digits), operators, at most one pair of parentheses per operator, and "="
  const maxPromptChars = leaves * (o.max_digits + 1) + (leaves - 1) * 3 + 1;
  const draw = { seed: spec.seed, testFraction: o.test_fraction, maxAttempts: 10_000, taskName: 'arithmetic' };

  const generate = (rng: Rng): TaskExample | null => {
    const node = expression(rng, rng.int(o.min_depth, o.max_depth), o, ops);
    if (node === null) return null;
    const answer = node.value.toString();
    if (answer.length > o.max_answer_chars) return null;
    const meta: ArithmeticMeta = { answer };
    return { prompt: `${node.text}=`, target: answer, meta };
  };

  return Object.freeze({
    name: 'arithmetic',
    seed: spec.seed,
    options: o,
    alphabet: ARITHMETIC_ALPHABET,
    maxCompletionTokens: o.max_answer_chars + 1, // + EOS
    maxPromptChars,
    example: (split: Split, index: number) => drawExample(split, index, draw, generate),
    rewards: REWARDS,
    isCorrect: (_prompt: string, completion: string, meta: unknown) => isCorrectArithmetic(completion, meta),
  });
}

export const arithmeticTask: TaskFactory = Object.freeze({
  name: 'arithmetic',
  description: 'exact arithmetic over + - * / and parentheses (knobs: ' + ARITHMETIC_OPTION_KEYS.join(', ') + ')',
  create: createArithmetic,
});
