/**
 * The GRPO objective as a public API (re-exported by the package entry, `grpo-cluster`):
 * group-relative advantages on the host, the clipped-surrogate loss with KL and entropy terms on
 * tfjs tensors, the loss-variant table, and DAPO's shaping helpers. See docs/objective.md.
 */
export { GrpoErrorCode } from './check.js';
export {
  combineRewards,
  type CombinedRewards,
  type RewardArray,
  type RewardValue,
  type RewardsByName,
  type RewardsInput,
  type RewardWeights,
} from './rewards.js';
export {
  ADVANTAGE_DEFAULTS,
  ADVANTAGE_SCALES,
  STD_KINDS,
  groupAdvantages,
  type AdvantageScale,
  type GroupAdvantageOptions,
  type GroupAdvantages,
  type StdKind,
} from './advantages.js';
export {
  LOSS_REDUCERS,
  LOSS_TYPES,
  resolveLossReducer,
  type LossReducer,
  type LossReducerContext,
  type LossType,
} from './losses.js';
export {
  GRPO_LOSS_DEFAULTS,
  IMPORTANCE_LEVELS,
  grpoLoss,
  type GrpoLossInputs,
  type GrpoLossOptions,
  type GrpoLossResult,
  type ImportanceLevel,
} from './grpo-loss.js';
export {
  LOSS_METRIC_NAMES,
  decodeLossMetrics,
  readLossMetrics,
  type LossMetricName,
  type LossMetrics,
} from './metrics.js';
export { k3Kl } from './kl.js';
export { stopGradient } from './stop-gradient.js';
export {
  filterZeroStdGroups,
  isTruncated,
  maskTruncated,
  overlongPenalty,
  type FilterZeroStdOptions,
  type FilterZeroStdResult,
  type FinishReason,
} from './shaping.js';
