/**
 * Countdown problems on the host: a random expression over the numbers (to make a solvable
 * target) and an exhaustive solver (to give SFT a canonical solution).
 *
 * Values are exact fractions of JS integers. With at most 5 numbers of at most 100, every
 * numerator and denominator that can arise is below 100^5 = 1e10, far inside 2^53, so no
 * precision is lost. Expression texts carry only the parentheses precedence needs, the same rule
 * as the arithmetic task: a - (b - c) and a / (b * c) keep theirs, a + (b - c) loses them. Every
 * parenthesised group therefore holds an operator at its top level, as the Countdown grammar
 * requires.
 */
import type { Rng } from '../shared/rng.js';

interface Frac {
  n: number;
  d: number; // > 0, coprime with n
}

interface Node {
  value: Frac;
  text: string;
  prec: number; // 1 for + -, 2 for * /, 3 for numbers
}

type Op = '+' | '-' | '*' | '/';
const PRECEDENCE: Record<Op, number> = { '+': 1, '-': 1, '*': 2, '/': 2 };

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function frac(n: number, d: number): Frac {
  if (d < 0) [n, d] = [-n, -d];
  const g = gcd(n, d) || 1;
  return { n: n / g, d: d / g };
}

/** a op b, or null when dividing by zero. */
function apply(op: Op, a: Frac, b: Frac): Frac | null {
  switch (op) {
    case '+':
      return frac(a.n * b.d + b.n * a.d, a.d * b.d);
    case '-':
      return frac(a.n * b.d - b.n * a.d, a.d * b.d);
    case '*':
      return frac(a.n * b.n, a.d * b.d);
    case '/':
      return b.n === 0 ? null : frac(a.n * b.d, a.d * b.n);
  }
}

function combine(op: Op, left: Node, right: Node): Node | null {
  const value = apply(op, left.value, right.value);
  if (value === null) return null;
  const p = PRECEDENCE[op];
  const l = left.prec < p ? `(${left.text})` : left.text;
  const r = right.prec < p || (right.prec === p && (op === '-' || op === '/')) ? `(${right.text})` : right.text;
  return { value, text: `${l}${op}${r}`, prec: p };
}

const leaf = (n: number): Node => ({ value: { n, d: 1 }, text: String(n), prec: 3 });

/**
 * A random expression over all of `numbers` (useAll) or over a random subset of at least two of
 * them (at least one when only one is given): pairs are combined at random with a random
 * operator until one node is left. Subtraction keeps the larger operand first and division is
 * taken only when exact, so the values look like a Countdown player's. Returns null when the
 * result is not an integer.
 */
export function randomCountdownExpression(rng: Rng, numbers: readonly number[], useAll: boolean): { value: number; text: string } | null {
  let pool = numbers.map(leaf);
  if (!useAll && pool.length > 1) {
    const keep = rng.int(2, pool.length);
    for (let i = pool.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    pool = pool.slice(0, keep);
  }
  while (pool.length > 1) {
    const i = rng.int(0, pool.length - 1);
    let j = rng.int(0, pool.length - 2);
    if (j >= i) j++;
    let [a, b] = [pool[i], pool[j]];
    const ops: Op[] = ['+', '-', '*'];
    if (b.value.n !== 0 && apply('/', a.value, b.value)!.d === 1) ops.push('/');
    const op = rng.pick(ops);
    if (op === '-' && a.value.n * b.value.d < b.value.n * a.value.d) [a, b] = [b, a];
    const node = combine(op, a, b)!;
    pool = pool.filter((_, k) => k !== i && k !== j);
    pool.push(node);
  }
  const v = pool[0].value;
  return v.d === 1 ? { value: v.n, text: pool[0].text } : null;
}

export interface SolveOptions {
  useAll: boolean;
  /** Search nodes before giving up (null result); 1e6 covers 5 numbers exhaustively. */
  maxNodes?: number;
}

/**
 * The first expression equal to `target` found by a depth-first search in a fixed order (pairs
 * i < j in list order, then + - * / with both operand orders for - and /), or null when there is
 * none (or the node budget ran out). Under useAll the expression uses every number exactly once,
 * else at most once. Deterministic: the same numbers and target give the same text.
 */
export function solveCountdown(numbers: readonly number[], target: number, opts: SolveOptions): string | null {
  const budget = { left: opts.maxNodes ?? 1_000_000 };
  const hit = (node: Node): boolean => node.value.d === 1 && node.value.n === target;
  const start = numbers.map(leaf);
  if (!opts.useAll) {
    const single = start.find(hit);
    if (single) return single.text;
  }
  const search = (pool: Node[]): string | null => {
    if (pool.length === 1) return opts.useAll && hit(pool[0]) ? pool[0].text : null;
    for (let i = 0; i < pool.length; i++) {
      for (let j = i + 1; j < pool.length; j++) {
        const rest = pool.filter((_, k) => k !== i && k !== j);
        const a = pool[i];
        const b = pool[j];
        const candidates: [Op, Node, Node][] = [
          ['+', a, b],
          ['-', a, b],
          ['-', b, a],
          ['*', a, b],
          ['/', a, b],
          ['/', b, a],
        ];
        for (const [op, l, r] of candidates) {
          if (--budget.left < 0) return null;
          const node = combine(op, l, r);
          if (node === null) continue;
          if (!opts.useAll && hit(node)) return node.text;
          const found = search([...rest, node]);
          if (found !== null) return found;
        }
      }
    }
    return null;
  };
  return search(start);
}
