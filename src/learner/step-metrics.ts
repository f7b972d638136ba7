/**
 * What a learner step reports, and the host-side arithmetic behind it:
 *
 *   - BatchStats: rewards and lengths of the admitted groups, computed on the host while the
 *     step batch is built (batch.ts), before any tensor exists;
 *   - StepMetrics: BatchStats plus the loss metrics of every micro-batch of every inner epoch,
 *     folded together after the step's one device-to-host read (train-step.ts).
 *
 * Folding rules (what one number per step means):
 *   loss, policyLoss   sum_k w_k * value_k over the micro-batches k of an epoch, with w_k the
 *                      accumulation weight (train-step.ts), so it is the loss whose gradient the
 *                      optimizer applied; then the mean over inner epochs
 *   kl, entropy, clip shares, ratioMean
 *                      token-weighted mean over every micro-batch of every epoch (each call's
 *                      value is a mean over its numTokens)
 *   gradNorm           global L2 norm before clipping, mean over inner epochs
 */
import { LOSS_METRIC_NAMES, decodeLossMetrics, type LossMetrics } from '../grpo/index.js';

/** Summary of one step batch, host side (no tensor read). */
export interface BatchStats {
  groups: number; // groups admitted into the step
  droppedGroups: number; // dropped by dynamic sampling (flat rewards): no gradient from them
  completions: number; // completions trained (after dynamic sampling)
  rewardMean: number; // mean weighted reward total over all scored completions (shaping included)
  rewardStd: number; // sample std of those totals
  /** Per reward function (raw scores, before weights), over the completions it scored. */
  rewardFunctions: Record<string, { mean: number; std: number }>;
  fracRewardZeroStd: number; // share of groups whose rewards are all equal
  unscored: number; // completions that no weighted reward function scored (advantage 0)
  lengthMean: number; // completion tokens, over all admitted completions
  lengthMin: number;
  lengthMax: number;
  truncatedShare: number; // share of completions cut at max_gen_len (finishReason 'length')
  completionTokens: number; // sum of completion lengths of the admitted completions
  trainTokens: number; // completion tokens with mask 1 (after dynamic sampling and mask_truncated)
  advantageMean: number; // over the completions trained (after dynamic sampling); NaN for none
  advantageStd: number; // sample std of those advantages
  /** Mean log-probability of the sampled tokens under the policy that sampled them (the workers'), nats/token. */
  logprobMean: number;
}

/** Per completion of the step's groups (in their order, a group's completions contiguous). */
export interface CompletionOutcomes {
  rewards: Float64Array; // weighted reward total; NaN where no reward function scored it
  advantages: Float32Array; // the advantage it was trained with; 0 for a group dynamic sampling dropped
}

/** Metrics of one inner epoch (one optimizer step). */
export interface EpochMetrics {
  loss: number;
  policyLoss: number;
  kl: number;
  entropy: number;
  clipLow: number;
  clipHigh: number;
  clipRegion: number;
  ratioMean: number;
  gradNorm: number; // before clipping
}

/** Everything one GrpoTrainer.step() reports; NaN marks a value that was not measured. */
export interface StepMetrics extends EpochMetrics {
  step: number; // the step index passed to step()
  policyVersion: number; // version of the weights after this step
  updated: boolean; // false: nothing to train on (no token with mask 1); weights unchanged
  lr: number; // learning rate of this step's update(s)
  tokens: number; // completion tokens trained (mask sum)
  seconds: number; // wall time of step(), batch building included
  tokensPerSecond: number; // tokens * epochs / seconds
  stalenessMean: number; // policyVersion before the step minus each group's policyVersion
  stalenessMax: number;
  epochs: EpochMetrics[]; // one per inner epoch, in order
  batch: BatchStats;
  completions: CompletionOutcomes;
}

/** Mean and sample std (n - 1; 0 with fewer than 2); NaN mean for no values. */
export function meanStd(values: ArrayLike<number>): { mean: number; std: number } {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: 0 };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i];
  const mean = sum / n;
  if (n < 2) return { mean, std: 0 };
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / (n - 1)) };
}

/** Where each micro-batch's metrics row sits in the step's one host read. */
export interface MetricsLayout {
  epochs: number;
  /** Accumulation weight of each micro-batch (the same in every epoch). */
  weights: readonly number[];
}

/**
 * Folds the step's host values: `values` holds epochs * microBatches rows of
 * LOSS_METRIC_NAMES (epoch-major), then one pre-clip gradient norm per epoch.
 */
export function foldStepMetrics(
  values: ArrayLike<number>,
  layout: MetricsLayout,
): { total: EpochMetrics; epochs: EpochMetrics[] } {
  const width = LOSS_METRIC_NAMES.length;
  const K = layout.weights.length;
  const rows: LossMetrics[][] = [];
  for (let e = 0; e < layout.epochs; e++) {
    const row: LossMetrics[] = [];
    for (let k = 0; k < K; k++) {
      const start = (e * K + k) * width;
      row.push(decodeLossMetrics(Array.prototype.slice.call(values, start, start + width) as number[]));
    }
    rows.push(row);
  }
  const norms = Array.prototype.slice.call(values, layout.epochs * K * width) as number[];
  const epochs = rows.map((row, e) => foldRows(row, layout.weights, [norms[e]]));
  const total = foldRows(rows.flat(), [], norms);
  // the loss of the whole step: mean over epochs of each epoch's weighted sum
  total.loss = epochs.reduce((a, m) => a + m.loss, 0) / epochs.length;
  total.policyLoss = epochs.reduce((a, m) => a + m.policyLoss, 0) / epochs.length;
  return { total, epochs };
}

/** Weighted loss sum (when weights are given) and token-weighted means of the shares. */
function foldRows(rows: LossMetrics[], weights: readonly number[], norms: number[]): EpochMetrics {
  let tokens = 0;
  for (const r of rows) tokens += r.numTokens;
  const tokenMean = (key: keyof LossMetrics): number => {
    if (tokens === 0) return NaN;
    let s = 0;
    for (const r of rows) if (r.numTokens > 0) s += r[key] * r.numTokens;
    return s / tokens;
  };
  const weighted = (key: 'loss' | 'policyLoss'): number => rows.reduce((a, r, k) => a + (weights[k] ?? 0) * r[key], 0);
  return {
    loss: weighted('loss'),
    policyLoss: weighted('policyLoss'),
    kl: tokenMean('kl'),
    entropy: tokenMean('entropy'),
    clipLow: tokenMean('clipLow'),
    clipHigh: tokenMean('clipHigh'),
    clipRegion: tokenMean('clipRegion'),
    ratioMean: tokenMean('ratioMean'),
    gradNorm: norms.reduce((a, b) => a + b, 0) / norms.length,
  };
}
