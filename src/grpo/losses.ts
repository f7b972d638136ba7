/**
 * The loss variants: how the per-token loss L [B, T] is reduced to one scalar under the mask
 * M [B, T]. Each variant is one small function in LOSS_REDUCERS; a new variant is a new entry
 * (or, without touching this file, a LossReducer passed as `lossType` to grpoLoss).
 *
 *   grpo     mean_b( sum_t L*M / max(sum_t M, 1) )   DeepSeekMath: per-sequence mean, then mean
 *   bnpo     sum L*M / max(sum M, 1)                 token mean over this micro-batch
 *   dr_grpo  sum L*M / (B * maxCompletionLength)     Dr. GRPO: a constant, no length bias
 *   dapo     sum L*M / numItemsInBatch               DAPO: tokens of the whole generation batch
 *
 * With gradient accumulation over micro-batches, the first three are averaged over the
 * micro-batches by the caller; dapo's micro-batch gradients are summed, which then equals the
 * gradient of one pass over the whole batch exactly (docs/objective.md).
 */
import { tf } from '../engine/tf.js';
import type { Scalar, Tensor2D } from '../engine/tf.js';
import { GrpoErrorCode, checkInt, checkPositive, describe, fail } from './check.js';

export interface LossReducerContext {
  /** dr_grpo: the generation limit (tokens), the same in every micro-batch. */
  maxCompletionLength?: number;
  /** dapo: completion tokens (mask sum) in the whole generation batch, over all micro-batches. */
  numItemsInBatch?: number;
}

/** perTokenLoss [B, T], mask [B, T] (float 0/1), context -> scalar loss. */
export type LossReducer = (perTokenLoss: Tensor2D, mask: Tensor2D, ctx: LossReducerContext) => Scalar;

function maskedSum(perTokenLoss: Tensor2D, mask: Tensor2D): Scalar {
  return tf.sum(tf.mul(perTokenLoss, mask));
}

const reducers = {
  grpo: (L: Tensor2D, M: Tensor2D): Scalar =>
    tf.tidy(() => {
      const perSeq = tf.div(tf.sum(tf.mul(L, M), 1), tf.maximum(tf.sum(M, 1), 1)); // [B]
      return tf.mean(perSeq);
    }),
  bnpo: (L: Tensor2D, M: Tensor2D): Scalar => tf.tidy(() => tf.div(maskedSum(L, M), tf.maximum(tf.sum(M), 1))),
  dr_grpo: (L: Tensor2D, M: Tensor2D, ctx: LossReducerContext): Scalar => {
    if (ctx.maxCompletionLength === undefined) {
      fail(
        GrpoErrorCode.BadOption,
        `grpoLoss: lossType dr_grpo needs maxCompletionLength (the generation limit in tokens)`,
      );
    }
    const maxLen = checkInt('grpoLoss', 'maxCompletionLength', ctx.maxCompletionLength, 1);
    return tf.tidy(() => tf.div(maskedSum(L, M), L.shape[0] * maxLen));
  },
  dapo: (L: Tensor2D, M: Tensor2D, ctx: LossReducerContext): Scalar => {
    if (ctx.numItemsInBatch === undefined) {
      fail(
        GrpoErrorCode.BadOption,
        `grpoLoss: lossType dapo needs numItemsInBatch (completion tokens in the whole generation batch); use bnpo for a token mean over this call`,
      );
    }
    const items = checkPositive('grpoLoss', 'numItemsInBatch', ctx.numItemsInBatch);
    return tf.tidy(() => tf.div(maskedSum(L, M), items));
  },
} satisfies Record<string, LossReducer>;

export type LossType = keyof typeof reducers;
/** The variants by name; every entry has the full LossReducer signature. */
export const LOSS_REDUCERS: Readonly<Record<LossType, LossReducer>> = Object.freeze(reducers);
export const LOSS_TYPES = Object.keys(LOSS_REDUCERS) as LossType[];

/** A loss type name from the table, or a caller's own reducer. */
export function resolveLossReducer(lossType: LossType | LossReducer): LossReducer {
  if (typeof lossType === 'function') return lossType;
  if (typeof lossType === 'string' && Object.hasOwn(LOSS_REDUCERS, lossType)) return LOSS_REDUCERS[lossType];
  return fail(
    GrpoErrorCode.BadOption,
    `grpoLoss: lossType must be one of ${LOSS_TYPES.join(', ')} or a LossReducer function, got ${describe(lossType)}`,
  );
}
