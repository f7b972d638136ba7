/**
 * Rewards as reward functions return them, combined into one total per completion (host side).
 *
 * Three input forms, all over N completions (the completions of one prompt contiguous):
 *   - totals:        `number[]` / `Float32Array` / `Float64Array` / `(number | null | undefined)[]`
 *   - per function:  `number[][]`, one array of length N per reward function, weights by position
 *   - by name:       `{ correct: [...], format: [...] }`, weights by name (a name without one: 1)
 * A value that is NaN, null or undefined means "this function could not score this completion":
 * it contributes nothing to the weighted sum, and a completion that no function scored has no
 * total (NaN here) and is left out of its group's statistics by groupAdvantages.
 */
import { GrpoErrorCode, describe, fail } from './check.js';

export type RewardValue = number | null | undefined;
/** One reward (or one score of a function) per completion. */
export type RewardArray = ArrayLike<RewardValue>;
export type RewardsByName = Readonly<Record<string, RewardArray>>;
/** Totals, one array per reward function, or arrays by reward-function name. */
export type RewardsInput = RewardArray | readonly RewardArray[] | RewardsByName;
/** By position for the per-function form, by name for the by-name form. */
export type RewardWeights = readonly number[] | Readonly<Record<string, number>>;

export interface CombinedRewards {
  /** [N] weighted sum over the functions that scored the completion; NaN where none did. */
  totals: Float64Array;
  /** [N] 1 where at least one function scored the completion. */
  scored: Uint8Array;
  /** Per reward function (name, or position as a string), the mean of its raw scores; NaN if none. */
  functionMeans: Record<string, number>;
}

function isArrayLikeOfNumbers(x: unknown): x is RewardArray {
  return Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));
}

/** Reads one reward: a number (NaN = unscored), null or undefined (unscored); anything else throws. */
function readReward(fn: string, where: string, v: unknown): number {
  if (v === null || v === undefined) return NaN;
  if (typeof v !== 'number' || v === Infinity || v === -Infinity) {
    fail(
      GrpoErrorCode.BadReward,
      `${fn}: reward ${where} is ${describe(v)}; rewards must be finite numbers, or NaN/null/undefined for "could not score"`,
    );
  }
  return v;
}

/**
 * Combines any reward form into totals. `weights` is only valid with the per-function forms;
 * a weight naming no reward function is an error (a typo would otherwise be silently ignored).
 */
export function combineRewards(rewards: RewardsInput, weights?: RewardWeights, fn = 'combineRewards'): CombinedRewards {
  const columns = toColumns(fn, rewards, weights);
  const n = columns[0].values.length;
  const totals = new Float64Array(n).fill(NaN);
  const scored = new Uint8Array(n);
  const functionMeans: Record<string, number> = {};
  for (const col of columns) {
    if (col.values.length !== n) {
      fail(
        GrpoErrorCode.BadShape,
        `${fn}: reward function ${col.name} has ${col.values.length} values but ${columns[0].name} has ${n}; give every function one value per completion`,
      );
    }
    let sum = 0;
    let count = 0;
    for (let i = 0; i < n; i++) {
      const r = readReward(fn, `${i} of function ${col.name}`, col.values[i]);
      if (Number.isNaN(r)) continue;
      totals[i] = (scored[i] ? totals[i] : 0) + col.weight * r;
      scored[i] = 1;
      sum += r;
      count++;
    }
    if (col.name !== 'total') functionMeans[col.name] = count > 0 ? sum / count : NaN;
  }
  return { totals, scored, functionMeans };
}

interface Column {
  name: string;
  values: RewardArray;
  weight: number;
}

function toColumns(fn: string, rewards: RewardsInput, weights: RewardWeights | undefined): Column[] {
  if (rewards === null || typeof rewards !== 'object') {
    fail(GrpoErrorCode.BadReward, `${fn}: rewards must be an array or a record of arrays, got ${describe(rewards)}`);
  }
  const list = isArrayLikeOfNumbers(rewards) ? (rewards as ArrayLike<unknown>) : null;
  const isPerFunction = list !== null && Array.isArray(list) && list.length > 0 && list.some(isArrayLikeOfNumbers);
  let columns: Column[];
  if (list !== null && !isPerFunction) {
    if (weights !== undefined) {
      fail(
        GrpoErrorCode.BadOption,
        `${fn}: weights apply to per-function rewards, but rewards are already totals; drop weights`,
      );
    }
    columns = [{ name: 'total', values: list as RewardArray, weight: 1 }];
  } else if (isPerFunction) {
    const fns = list as readonly unknown[];
    const bad = fns.findIndex((c) => !isArrayLikeOfNumbers(c));
    if (bad >= 0) {
      fail(
        GrpoErrorCode.BadReward,
        `${fn}: rewards mix arrays and single values (entry ${bad} is ${describe(fns[bad])}); give totals or one array per function`,
      );
    }
    if (weights !== undefined && (!Array.isArray(weights) || weights.length !== fns.length)) {
      fail(
        GrpoErrorCode.BadOption,
        `${fn}: weights must be an array of ${fns.length} numbers (one per reward function), got ${describe(weights)}`,
      );
    }
    const w = weights as readonly number[] | undefined;
    columns = fns.map((values, i) => ({
      name: String(i),
      values: values as RewardArray,
      weight: w ? checkWeight(fn, String(i), w[i]) : 1,
    }));
  } else {
    const byName = rewards as RewardsByName;
    const names = Object.keys(byName);
    if (weights !== undefined && (weights === null || typeof weights !== 'object' || Array.isArray(weights))) {
      fail(
        GrpoErrorCode.BadOption,
        `${fn}: rewards are by name, so weights must be a record of name -> number, got ${describe(weights)}`,
      );
    }
    const w = (weights ?? {}) as Readonly<Record<string, number>>;
    const unknown = Object.keys(w).filter((k) => !names.includes(k));
    if (unknown.length > 0) {
      fail(
        GrpoErrorCode.BadReward,
        `${fn}: weight(s) for ${unknown.join(', ')} name no reward function; functions: ${names.join(', ')}`,
      );
    }
    for (const name of names) {
      if (!isArrayLikeOfNumbers(byName[name])) {
        fail(GrpoErrorCode.BadReward, `${fn}: rewards of ${name} must be an array, got ${describe(byName[name])}`);
      }
    }
    columns = names.map((name) => ({
      name,
      values: byName[name],
      weight: name in w ? checkWeight(fn, name, w[name]) : 1,
    }));
  }
  if (columns.length === 0 || columns[0].values.length === 0) {
    fail(GrpoErrorCode.BadShape, `${fn}: no rewards given; pass one reward per completion`);
  }
  return columns;
}

function checkWeight(fn: string, name: string, w: unknown): number {
  if (typeof w !== 'number' || !Number.isFinite(w)) {
    fail(
      GrpoErrorCode.BadReward,
      `${fn}: weight of reward function ${name} must be a finite number, got ${describe(w)}`,
    );
  }
  return w;
}
