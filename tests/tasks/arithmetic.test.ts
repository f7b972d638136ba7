import { describe, expect, it } from 'vitest';
import {
  ARITHMETIC_ALPHABET,
  createArithmetic,
  formatReward,
  isCorrectArithmetic,
  partialReward,
  type ArithmeticMeta,
} from '../../src/tasks/arithmetic.js';
import type { Split, Task } from '../../src/tasks/types.js';

/**
 * An independent evaluator: recursive descent over the prompt with the usual precedence
 * (* and / bind tighter, left-associative, a "-" directly before digits at the start or after
 * an operator or "(" is part of the literal), on [num, den] BigInt pairs.
 */
type Q = [bigint, bigint];
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? (a < 0n ? -a : a) : gcd(b, a % b));
function q(n: bigint, d: bigint): Q {
  if (d === 0n) throw new Error('division by zero');
  if (d < 0n) [n, d] = [-n, -d];
  const g = gcd(n, d) || 1n;
  return [n / g, d / g];
}
const show = ([n, d]: Q): string => (d === 1n ? `${n}` : `${n}/${d}`);

function evaluate(text: string): { value: Q; ops: number; literals: string[]; maxNesting: number } {
  let i = 0;
  let ops = 0;
  let nesting = 0;
  let maxNesting = 0;
  const literals: string[] = [];
  const peek = () => text[i];
  const atom = (): Q => {
    if (peek() === '(') {
      i++;
      maxNesting = Math.max(maxNesting, ++nesting);
      const v = sum();
      if (text[i++] !== ')') throw new Error(`expected ) at ${i} in ${text}`);
      nesting--;
      return v;
    }
    const m = /^-?\d+/.exec(text.slice(i));
    if (!m) throw new Error(`expected a number at ${i} in ${text}`);
    i += m[0].length;
    literals.push(m[0]);
    return q(BigInt(m[0]), 1n);
  };
  const product = (): Q => {
    let v = atom();
    while (peek() === '*' || peek() === '/') {
      const op = text[i++];
      ops++;
      const r = atom();
      v = op === '*' ? q(v[0] * r[0], v[1] * r[1]) : q(v[0] * r[1], v[1] * r[0]);
    }
    return v;
  };
  const sum = (): Q => {
    let v = product();
    while (peek() === '+' || peek() === '-') {
      const op = text[i++];
      ops++;
      const r = product();
      v = op === '+' ? q(v[0] * r[1] + r[0] * v[1], v[1] * r[1]) : q(v[0] * r[1] - r[0] * v[1], v[1] * r[1]);
    }
    return v;
  };
  const value = sum();
  if (i !== text.length) throw new Error(`trailing text at ${i} in ${text}`);
  return { value, ops, literals, maxNesting };
}

function examples(task: Task, split: Split, n: number, from = 0) {
  return Array.from({ length: n }, (_, k) => task.example(split, from + k));
}

describe('arithmetic task: problems', () => {
  it('is deterministic in seed, split and index, and examples can be drawn in any order', () => {
    const a = createArithmetic({ seed: 7 });
    const b = createArithmetic({ seed: 7 });
    const forward = examples(a, 'train', 50);
    const backward = Array.from({ length: 50 }, (_, k) => b.example('train', 49 - k)).reverse();
    expect(backward).toEqual(forward);
    expect(a.example('test', 3)).toEqual(b.example('test', 3));
    const other = examples(createArithmetic({ seed: 8 }), 'train', 50);
    expect(other.map((e) => e.prompt)).not.toEqual(forward.map((e) => e.prompt));
    expect(a.example('train', 2 ** 40).prompt).toMatch(/=$/); // far indices work too
  });

  it('never puts a prompt in both splits, even when the problem space is tiny', () => {
    for (const options of [{}, { max_digits: 1, max_depth: 1, ops: '+', negative_rate: 0 }]) {
      const task = createArithmetic({ seed: 3, options });
      const train = new Set(examples(task, 'train', 1500).map((e) => e.prompt));
      const test = new Set(examples(task, 'test', 300).map((e) => e.prompt));
      expect(test.size).toBeGreaterThan(1);
      for (const p of test) expect(train.has(p), p).toBe(false);
    }
  });

  it('gives exact, canonical answers (fractions and negatives included) and never divides by zero', () => {
    const task = createArithmetic({ seed: 11, options: { max_digits: 2, max_depth: 3, negative_rate: 0.3, max_answer_chars: 12 } });
    let fractions = 0;
    let negatives = 0;
    for (const ex of examples(task, 'train', 600)) {
      const meta = ex.meta as ArithmeticMeta;
      expect(ex.prompt.endsWith('=')).toBe(true);
      const { value } = evaluate(ex.prompt.slice(0, -1));
      expect(meta.answer, ex.prompt).toBe(show(value));
      expect(ex.target).toBe(meta.answer);
      expect(meta.answer.length).toBeLessThanOrEqual(12);
      expect(JSON.parse(JSON.stringify(ex.meta))).toEqual(ex.meta);
      if (meta.answer.includes('/')) fractions++;
      if (meta.answer.startsWith('-')) negatives++;
      for (const c of ex.prompt + meta.answer) expect(ARITHMETIC_ALPHABET).toContain(c);
      expect(ex.prompt.length).toBeLessThanOrEqual(task.maxPromptChars);
    }
    expect(fractions).toBeGreaterThan(20);
    expect(negatives).toBeGreaterThan(20);
  });

  it('respects the depth knobs', () => {
    const one = createArithmetic({ seed: 1, options: { max_depth: 1 } });
    for (const ex of examples(one, 'train', 100)) {
      const r = evaluate(ex.prompt.slice(0, -1));
      expect(r.ops).toBe(1);
      expect(r.maxNesting).toBe(0);
    }
    const three = createArithmetic({ seed: 1, options: { min_depth: 3, max_depth: 3, max_answer_chars: 30 } });
    const opCounts = examples(three, 'train', 200).map((ex) => evaluate(ex.prompt.slice(0, -1)));
    for (const r of opCounts) {
      expect(r.ops).toBeGreaterThanOrEqual(3); // a tree of depth 3 has at least 3 operations
      expect(r.ops).toBeLessThanOrEqual(7); // and at most 2^3 - 1
      expect(r.maxNesting).toBeLessThanOrEqual(2);
    }
    expect(Math.max(...opCounts.map((r) => r.ops))).toBeGreaterThan(3);
  });

  it('respects the digit, operator and sign knobs', () => {
    const task = createArithmetic({ seed: 5, options: { max_digits: 3, max_depth: 2, negative_rate: 0, max_answer_chars: 40 } });
    const lits = examples(task, 'train', 200).flatMap((ex) => evaluate(ex.prompt.slice(0, -1)).literals);
    expect(lits.every((l) => /^\d{1,3}$/.test(l))).toBe(true);
    expect(lits.some((l) => l.length === 3)).toBe(true);
    const neg = createArithmetic({ seed: 5, options: { negative_rate: 1 } });
    const negLits = examples(neg, 'train', 100).flatMap((ex) => evaluate(ex.prompt.slice(0, -1)).literals);
    expect(negLits.every((l) => l === '0' || l.startsWith('-'))).toBe(true);
    const plus = createArithmetic({ seed: 5, options: { ops: '+', negative_rate: 0 } });
    for (const ex of examples(plus, 'train', 50)) expect(ex.prompt).toMatch(/^[0-9+()]+=$/);
  });

  it('rejects unknown or invalid options with a coded error naming them', () => {
    const code = expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' });
    expect(() => createArithmetic({ seed: 1, options: { max_digit: 2 } })).toThrow(code);
    expect(() => createArithmetic({ seed: 1, options: { max_digit: 2 } })).toThrow(/max_digit.*valid keys: max_digits/);
    expect(() => createArithmetic({ seed: 1, options: { min_depth: 3, max_depth: 2 } })).toThrow(code);
    expect(() => createArithmetic({ seed: 1, options: { ops: '+^' } })).toThrow(code);
    expect(() => createArithmetic({ seed: 1, options: { max_digits: 0 } })).toThrow(code);
    expect(() => createArithmetic({ seed: 1.5 })).toThrow(code);
    expect(createArithmetic({ seed: 1 }).options).toMatchObject({ max_digits: expect.any(Number), max_depth: expect.any(Number) });
    expect(Object.isFrozen(createArithmetic({ seed: 1 }).options)).toBe(true);
  });

  it('fails with a coded error when the knobs leave no problem for a split', () => {
    const task = createArithmetic({ seed: 1, options: { max_answer_chars: 1, ops: '/', max_digits: 1, negative_rate: 0 } });
    expect(task.example('train', 0).target).toMatch(/^\d$/);
    const impossible = createArithmetic({ seed: 1, options: { max_answer_chars: 1, ops: '-', min_depth: 6, max_depth: 6, max_digits: 9 } });
    expect(() => impossible.example('test', 0)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_EXHAUSTED' }));
  });
});

describe('arithmetic task: rewards and correctness', () => {
  const meta = (answer: string): ArithmeticMeta => ({ answer });

  it('is correct only for the exact canonical answer', () => {
    expect(isCorrectArithmetic('-1/3', meta('-1/3'))).toBe(true);
    expect(isCorrectArithmetic('-2/6', meta('-1/3'))).toBe(false);
    expect(isCorrectArithmetic('1/-3', meta('-1/3'))).toBe(false);
    expect(isCorrectArithmetic('', meta('0'))).toBe(false);
    expect(() => isCorrectArithmetic('1', { answer: 3 })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
  });

  it('format reward: 1 for any integer or fraction', () => {
    expect(formatReward('-1/3')).toBe(1);
    expect(formatReward('42')).toBe(1);
    expect(formatReward('2/4')).toBe(1);
    expect(formatReward('1/0')).toBe(0);
    expect(formatReward('')).toBe(0);
    expect(formatReward('3+4')).toBe(0);
  });

  it('partial reward: 1 - |v - a| / (|a| + 1), floored at 0', () => {
    expect(partialReward('2/4', meta('1/2'))).toBe(1);
    expect(partialReward('2', meta('1'))).toBeCloseTo(0.5, 12);
    expect(partialReward('-1', meta('1'))).toBe(0);
    expect(partialReward('9', meta('-10'))).toBe(0);
    expect(partialReward('-8', meta('-10'))).toBeCloseTo(1 - 2 / 11, 12);
    expect(partialReward('0', meta('-1/3'))).toBeCloseTo(1 - 1 / 3 / (4 / 3), 12);
    expect(partialReward('abc', meta('1'))).toBe(0);
  });

  it('lists its rewards with default weights, scoring the same as the functions', async () => {
    const task = createArithmetic({ seed: 1 });
    expect(task.rewards.map((r) => [r.name, r.weight])).toEqual([
      ['correct', 1],
      ['format', 0],
      ['partial', 0],
    ]);
    const ex = task.example('train', 0);
    const [correct, format, partial] = task.rewards;
    expect(await correct.fn(ex.prompt, ex.target!, ex.meta)).toBe(1);
    expect(await correct.fn(ex.prompt, ex.target! + '1', ex.meta)).toBe(0);
    expect(await format.fn(ex.prompt, 'x', ex.meta)).toBe(0);
    expect(await partial.fn(ex.prompt, ex.target!, ex.meta)).toBe(1);
    expect(task.isCorrect(ex.prompt, ex.target!, ex.meta)).toBe(true);
    expect(task.maxCompletionTokens).toBe((task.options.max_answer_chars as number) + 1);
  });
});
