/**
 * Group-relative advantages (host side: rewards come from reward functions as plain numbers).
 *
 *   A_i = (r_i - mean_g) / (std_g + eps)      scale 'group' (GRPO, default)
 *   A_i = (r_i - mean_g) / (std_batch + eps)  scale 'batch' (mean still per group)
 *   A_i =  r_i - mean_g                       scale 'none'  (Dr. GRPO)
 *
 * over groups of `groupSize` contiguous completions of one prompt. Only scored completions
 * (see rewards.ts) enter mean and std; an unscored completion gets advantage 0. A flat group
 * (its scored rewards span at most `flatTolerance`, or nothing in it was scored) gets exactly
 * 0 everywhere, never NaN. The std is the sample std (divide by n - 1) by default, the same as
 * torch's `Tensor.std()` used by TRL and the seed trainers, so our numbers match theirs; pass
 * `std: 'population'` for divide-by-n. docs/objective.md has the formulas and the reasons.
 */
import { GrpoErrorCode, checkChoice, checkInt, checkKeys, checkNumber, fail } from './check.js';
import { combineRewards, type RewardsInput, type RewardWeights } from './rewards.js';

export const ADVANTAGE_SCALES = ['group', 'batch', 'none'] as const;
export type AdvantageScale = (typeof ADVANTAGE_SCALES)[number];
export const STD_KINDS = ['sample', 'population'] as const;
export type StdKind = (typeof STD_KINDS)[number];

export interface GroupAdvantageOptions {
  /** What the centred reward is divided by; default 'group'. */
  scale?: AdvantageScale;
  /** Sample (n - 1) or population (n) std; default 'sample'. */
  std?: StdKind;
  /** Added to the std before dividing; default 1e-4 (TRL's value; keeps tiny stds from exploding). */
  eps?: number;
  /** Weights of the reward functions (per-function forms only); default 1 each. */
  weights?: RewardWeights;
  /** A group whose scored rewards span at most this is flat (zero std); default 1e-8. */
  flatTolerance?: number;
}

export const ADVANTAGE_DEFAULTS = Object.freeze({
  scale: 'group' as AdvantageScale,
  std: 'sample' as StdKind,
  eps: 1e-4,
  flatTolerance: 1e-8,
});

const KEYS = ['scale', 'std', 'eps', 'weights', 'flatTolerance'] as const;

export interface GroupAdvantages {
  /** [N] the advantages, float32 as the loss consumes them. */
  advantages: Float32Array;
  /** [N] weighted reward totals; NaN where no reward function scored the completion. */
  totals: Float64Array;
  /** [N] 1 where at least one reward function scored the completion. */
  scored: Uint8Array;
  /** [G] mean of the scored totals of each group; NaN for a group with none scored. */
  groupMean: Float64Array;
  /** [G] std (kind per `std`) of the scored totals of each group; 0 with fewer than 2 scored. */
  groupStd: Float64Array;
  /** [G] 1 for a flat group (zero std, or nothing scored): its advantages are all 0. */
  flatGroups: Uint8Array;
  /** Share of groups that are flat: they give no learning signal. */
  fracRewardZeroStd: number;
  /** Completions that no reward function scored. */
  numUnscored: number;
  /** Mean of all scored totals in the batch. */
  rewardMean: number;
  /** Std (kind per `std`) of all scored totals in the batch: the divisor of scale 'batch'. */
  rewardStd: number;
  /** Per reward function, mean of its raw scores (per-function forms only). */
  functionMeans: Record<string, number>;
}

/** Mean and std (sample or population) of the values; std 0 with fewer than 2 (n - 1 = 0). */
function meanStd(values: readonly number[], kind: StdKind): { mean: number; std: number } {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: 0 };
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / n;
  if (n < 2) return { mean, std: 0 };
  let ss = 0;
  for (const v of values) ss += (v - mean) * (v - mean);
  return { mean, std: Math.sqrt(ss / (kind === 'sample' ? n - 1 : n)) };
}

/**
 * rewards [numGroups * groupSize] (any form of rewards.ts) -> advantages of the same length.
 * Throws GRPO_ERR_BAD_SHAPE when groupSize does not divide the number of completions,
 * GRPO_ERR_BAD_REWARD for a reward that is infinite or not a number, GRPO_ERR_BAD_OPTION for a
 * bad option.
 */
export function groupAdvantages(
  rewards: RewardsInput,
  groupSize: number,
  opts: GroupAdvantageOptions = {},
): GroupAdvantages {
  const fn = 'groupAdvantages';
  checkKeys(fn, opts, KEYS);
  const scale = checkChoice(fn, 'scale', opts.scale ?? ADVANTAGE_DEFAULTS.scale, ADVANTAGE_SCALES);
  const stdKind = checkChoice(fn, 'std', opts.std ?? ADVANTAGE_DEFAULTS.std, STD_KINDS);
  const eps = checkNumber(fn, 'eps', opts.eps ?? ADVANTAGE_DEFAULTS.eps, 0);
  const flatTolerance = checkNumber(fn, 'flatTolerance', opts.flatTolerance ?? ADVANTAGE_DEFAULTS.flatTolerance, 0);
  checkInt(fn, 'groupSize', groupSize, 2);

  const { totals, scored, functionMeans } = combineRewards(rewards, opts.weights, fn);
  const n = totals.length;
  if (n % groupSize !== 0) {
    fail(
      GrpoErrorCode.BadShape,
      `${fn}: ${n} rewards do not split into groups of ${groupSize}; pass numGroups * groupSize rewards, completions of one prompt contiguous`,
    );
  }
  const numGroups = n / groupSize;
  const allScored: number[] = [];
  for (let i = 0; i < n; i++) if (scored[i]) allScored.push(totals[i]);
  const batch = meanStd(allScored, stdKind);

  const advantages = new Float32Array(n);
  const groupMean = new Float64Array(numGroups);
  const groupStd = new Float64Array(numGroups);
  const flatGroups = new Uint8Array(numGroups);
  for (let g = 0; g < numGroups; g++) {
    const start = g * groupSize;
    const vals: number[] = [];
    for (let i = start; i < start + groupSize; i++) if (scored[i]) vals.push(totals[i]);
    const { mean, std } = meanStd(vals, stdKind);
    groupMean[g] = mean;
    groupStd[g] = std;
    const flat = vals.length === 0 || Math.max(...vals) - Math.min(...vals) <= flatTolerance;
    flatGroups[g] = flat ? 1 : 0;
    if (flat) continue; // advantages stay exactly 0: no signal, and no 0/0
    const divisor = scale === 'group' ? std + eps : scale === 'batch' ? batch.std + eps : 1;
    for (let i = start; i < start + groupSize; i++) {
      if (scored[i]) advantages[i] = (totals[i] - mean) / divisor;
    }
  }
  let flatCount = 0;
  for (const f of flatGroups) flatCount += f;
  return {
    advantages,
    totals,
    scored,
    groupMean,
    groupStd,
    flatGroups,
    fracRewardZeroStd: flatCount / numGroups,
    numUnscored: n - allScored.length,
    rewardMean: batch.mean,
    rewardStd: batch.std,
    functionMeans,
  };
}
