/** Shared helpers of the GRPO tests: fixtures, coded-error assertions, tolerant comparisons. */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

/** Reads tests/fixtures/grpo/<name> (written by tools/golden/grpo_golden.py). */
export function loadFixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/grpo/${name}`, import.meta.url), 'utf8')) as T;
}

/** The coded-error assertion shared by every test folder. */
export { expectCode } from '../helpers.js';

/** JSON null stands for NaN (JSON has no NaN). */
export function num(x: number | null): number {
  return x === null ? NaN : x;
}

/** |a - e| <= abs + rel * |e| elementwise; NaN matches NaN only. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number | null>,
  abs: number,
  rel = 0,
  what = '',
): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = num(expected[i]);
    const a = actual[i];
    if (Number.isNaN(e)) {
      expect(a, `${what}[${i}]`).toBeNaN();
      continue;
    }
    const tol = abs + rel * Math.abs(e);
    expect(Math.abs(a - e), `${what}[${i}]: got ${a}, expected ${e} (tolerance ${tol})`).toBeLessThanOrEqual(tol);
  }
}
