/**
 * Pieces around the loss that DAPO-style trainers need:
 *   - overlongPenalty: soft length penalty added to the reward (DAPO "overlong reward shaping")
 *   - maskTruncated:   completions cut at the length limit get no gradient (DAPO "overlong filtering")
 *   - filterZeroStdGroups: drop groups whose rewards are all equal (DAPO "dynamic sampling")
 */
import { tf } from '../engine/tf.js';
import type { Tensor2D } from '../engine/tf.js';
import type { SampleResult } from '../model/types.js';
import { GrpoErrorCode, checkInt, checkKeys, checkNumber, describe, fail, shapeStr } from './check.js';
import { ADVANTAGE_DEFAULTS } from './advantages.js';
import { combineRewards, type RewardsInput, type RewardWeights } from './rewards.js';

/**
 * DAPO's overlong penalty for a completion of `length` tokens, added to its reward:
 *   0                                   length <= maxLen - cacheLen
 *   (maxLen - cacheLen - length) / cacheLen   in between (linear from 0 to -1)
 *   -1                                  length > maxLen
 * cacheLen 0 switches the ramp off (0 up to maxLen, -1 beyond).
 */
export function overlongPenalty(length: number, maxLen: number, cacheLen: number): number {
  const fn = 'overlongPenalty';
  checkInt(fn, 'length', length, 0, GrpoErrorCode.BadShape);
  checkInt(fn, 'maxLen', maxLen, 1);
  checkInt(fn, 'cacheLen', cacheLen, 0);
  if (cacheLen > maxLen) {
    fail(GrpoErrorCode.BadOption, `${fn}: cacheLen ${cacheLen} exceeds maxLen ${maxLen}; use a window inside it`);
  }
  const start = maxLen - cacheLen;
  if (length <= start) return 0;
  if (length <= maxLen) return (start - length) / cacheLen;
  return -1;
}

/** Why sampling of a row ended (SampleResult.finishReason); 'length' = cut at the limit. */
export type FinishReason = SampleResult['finishReason'][number];
const FINISH_REASONS: readonly FinishReason[] = ['stop', 'length', 'grammar'];

/**
 * True when a completion hit the length limit without ending in a stop token: `tokens` has
 * `maxLen` (or more) tokens and its last one is not in `stopTokens`.
 */
export function isTruncated(tokens: ArrayLike<number>, maxLen: number, stopTokens: readonly number[]): boolean {
  checkInt('isTruncated', 'maxLen', maxLen, 1);
  return tokens.length >= maxLen && !stopTokens.includes(tokens[tokens.length - 1]);
}

/**
 * mask [B, T] -> a new mask [B, T] with the rows of truncated completions set to 0, so they add
 * no gradient (they still count for their group's advantages). `truncated` gives per row either
 * a flag (true/1 = truncated) or the sampler's finish reason ('length' = truncated). The caller
 * disposes the result; the input mask is left as it is.
 */
export function maskTruncated(mask: Tensor2D, truncated: ArrayLike<boolean | number | FinishReason>): Tensor2D {
  const fn = 'maskTruncated';
  if (!(mask instanceof tf.Tensor) || mask.rank !== 2) {
    fail(GrpoErrorCode.BadShape, `${fn}: mask must be a [B, T] tensor, got ${describe(mask)}`);
  }
  const B = mask.shape[0];
  if (truncated === null || typeof truncated !== 'object' || truncated.length !== B) {
    fail(
      GrpoErrorCode.BadShape,
      `${fn}: need one truncation flag per row of mask ${shapeStr(mask.shape)}, got ${describe(truncated)}`,
    );
  }
  const keep = new Float32Array(B); // [B] 1 = keep the row's tokens
  for (let b = 0; b < B; b++) {
    const f = truncated[b];
    if (typeof f === 'string' && !FINISH_REASONS.includes(f)) {
      fail(
        GrpoErrorCode.BadOption,
        `${fn}: row ${b} has finish reason ${describe(f)}; expected ${FINISH_REASONS.join(', ')} or a boolean`,
      );
    }
    keep[b] = f === true || f === 1 || f === 'length' ? 0 : 1;
  }
  return tf.tidy(() => tf.mul(tf.cast(mask, 'float32'), tf.tensor2d(keep, [B, 1])) as Tensor2D);
}

export interface FilterZeroStdOptions {
  /** A group whose scored rewards span at most this is dropped; default 1e-8 (as groupAdvantages). */
  tolerance?: number;
  /** Weights of the reward functions (per-function forms only). */
  weights?: RewardWeights;
}

export interface FilterZeroStdResult {
  /** Indices of the groups kept, ascending. */
  keptGroups: number[];
  /** Completion indices of the kept groups, ascending (groupSize per kept group). */
  keptIndices: number[];
  /** Number of groups dropped: flat, or no completion scored. */
  dropped: number;
}

/**
 * DAPO's dynamic-sampling filter: keeps the groups whose rewards differ (they carry a learning
 * signal) and drops those whose scored rewards are all equal within `tolerance`, or that have no
 * scored completion. Rewards take any form of rewards.ts.
 */
export function filterZeroStdGroups(
  rewards: RewardsInput,
  groupSize: number,
  opts: FilterZeroStdOptions = {},
): FilterZeroStdResult {
  const fn = 'filterZeroStdGroups';
  checkKeys(fn, opts, ['tolerance', 'weights']);
  const tolerance = checkNumber(fn, 'tolerance', opts.tolerance ?? ADVANTAGE_DEFAULTS.flatTolerance, 0);
  checkInt(fn, 'groupSize', groupSize, 1);
  const { totals, scored } = combineRewards(rewards, opts.weights, fn);
  if (totals.length % groupSize !== 0) {
    fail(
      GrpoErrorCode.BadShape,
      `${fn}: ${totals.length} rewards do not split into groups of ${groupSize}; pass numGroups * groupSize rewards`,
    );
  }
  const keptGroups: number[] = [];
  const keptIndices: number[] = [];
  for (let g = 0; g < totals.length / groupSize; g++) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = g * groupSize; i < (g + 1) * groupSize; i++) {
      if (!scored[i]) continue;
      min = Math.min(min, totals[i]);
      max = Math.max(max, totals[i]);
    }
    if (max === -Infinity || max - min <= tolerance) continue;
    keptGroups.push(g);
    for (let i = g * groupSize; i < (g + 1) * groupSize; i++) keptIndices.push(i);
  }
  return { keptGroups, keptIndices, dropped: totals.length / groupSize - keptGroups.length };
}
