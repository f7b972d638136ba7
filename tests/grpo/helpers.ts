/** Shared helpers of the GRPO tests: fixtures, coded-error assertions, tolerant comparisons. */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { isGrpoError, type ErrorCode } from '../../src/shared/errors.js';

/** Reads tests/fixtures/grpo/<name> (written by tools/golden/grpo_golden.py). */
export function loadFixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/grpo/${name}`, import.meta.url), 'utf8')) as T;
}

/** Asserts that fn throws a GrpoError with this code (and a message matching `message`). */
export function expectCode(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  let thrown: unknown = null;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code} to be thrown`).not.toBeNull();
  expect(isGrpoError(thrown) ? thrown.code : String(thrown)).toBe(code);
  if (message) expect((thrown as Error).message).toMatch(message);
}

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
