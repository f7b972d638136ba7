/**
 * Argument checks shared by the GRPO functions. Each failure is a GrpoError whose message names
 * the function, the value, the limit and what to do. Option objects are checked once per call
 * against their list of known keys, so a misspelt option fails instead of being ignored.
 */
import { GrpoError, type ErrorCode } from '../shared/errors.js';

/** Error codes of this module (listed in docs/objective.md). */
export const GrpoErrorCode = {
  /** A tensor or array has the wrong rank, length or shape. */
  BadShape: 'GRPO_ERR_BAD_SHAPE',
  /** A reward is not a number, null or undefined, or is infinite; a weight is bad or unknown. */
  BadReward: 'GRPO_ERR_BAD_REWARD',
  /** An advantage is NaN or infinite. */
  BadAdvantage: 'GRPO_ERR_BAD_ADVANTAGE',
  /** An option is unknown, out of range, or missing where the chosen variant needs it. */
  BadOption: 'GRPO_ERR_BAD_OPTION',
} as const satisfies Record<string, ErrorCode>;

export function fail(code: ErrorCode, message: string): never {
  throw new GrpoError(code, message);
}

/** Rejects keys of `opts` that are not in `known`. */
export function checkKeys(fn: string, opts: object | undefined, known: readonly string[]): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    fail(GrpoErrorCode.BadOption, `${fn}: options must be an object, got ${describe(opts)}`);
  }
  const unknown = Object.keys(opts).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    fail(GrpoErrorCode.BadOption, `${fn}: unknown option(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
}

/** A finite number within [min, max] (inclusive). */
export function checkNumber(fn: string, name: string, value: unknown, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = `${min === -Infinity ? '' : `>= ${min}`}${min !== -Infinity && max !== Infinity ? ' and ' : ''}${
      max === Infinity ? '' : `<= ${max}`
    }`;
    const limit = range ? ` ${range}` : '';
    fail(GrpoErrorCode.BadOption, `${fn}: ${name} must be a finite number${limit}, got ${describe(value)}`);
  }
  return value;
}

/** A finite number > 0. */
export function checkPositive(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    fail(GrpoErrorCode.BadOption, `${fn}: ${name} must be a finite number > 0, got ${describe(value)}`);
  }
  return value;
}

/** An integer >= min. */
export function checkInt(
  fn: string,
  name: string,
  value: unknown,
  min: number,
  code: ErrorCode = GrpoErrorCode.BadOption,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    fail(code, `${fn}: ${name} must be an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}

/** One of the allowed string values. */
export function checkChoice<T extends string>(fn: string, name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    fail(GrpoErrorCode.BadOption, `${fn}: ${name} must be one of ${choices.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/** Short printable form of a value for messages. */
export function describe(value: unknown): string {
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `array(${value.length})`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as ArrayLike<number>).length})`;
  return typeof value;
}

/** Formats a shape for messages: [4, 16]. */
export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
