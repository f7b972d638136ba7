/**
 * Grammar masks for recomputing log-probabilities: the learner's tokenLogProbs renormalises each
 * constrained position over the token ids the sampler's grammar allowed there, exactly as the
 * sampler reported them (sampling.ts, maskedLogProb), so behaviour and learner log-probabilities
 * agree and the importance ratio is 1 on-policy.
 *
 * Layout for N positions (N = B * (T - 1) in tokenLogProbs, position n predicting ids[b, t + 1]):
 * each position holds `width` slots of ids (the largest allowed set of the batch), padded with id 0
 * and valid 0; `constrained[n]` is 1 where a set applies and 0 where every token was allowed.
 * Storage is N * width ids, not N * V: grammars usually allow few tokens per step.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';

export interface AllowedMask {
  width: number; // K: slots per position
  ids: Int32Array; // [N * K] allowed token ids (padding: 0)
  valid: Float32Array; // [N * K] 1 = a real entry, 0 = padding
  constrained: Float32Array; // [N] 1 = renormalise this position over its ids
}

/** Padding slots sit this far below every real log-probability, so exp() of them is 0. */
const PAD_LOGIT = -1e9;

/**
 * The mask of N positions from per-position allowed sets (null/undefined = unconstrained), or
 * null when no position is constrained.
 */
export function buildAllowedMask(sets: readonly (readonly number[] | null | undefined)[]): AllowedMask | null {
  let width = 0;
  for (const s of sets) if (s) width = Math.max(width, s.length);
  if (width === 0) return null;
  const N = sets.length;
  const ids = new Int32Array(N * width);
  const valid = new Float32Array(N * width);
  const constrained = new Float32Array(N);
  sets.forEach((s, n) => {
    if (!s) return;
    constrained[n] = 1;
    ids.set(s, n * width);
    valid.fill(1, n * width, n * width + s.length);
  });
  return { width, ids, valid, constrained };
}

/**
 * For log-softmax rows `lsm` [N, V]: log Z [N], the log of the probability mass on each position's
 * allowed ids (0 where unconstrained), and with `withEntropy` the entropy of the renormalised
 * distribution at constrained positions and of the full one elsewhere [N]. Differentiable;
 * synchronous, call inside tf.tidy.
 */
export function maskedNormaliser(lsm: tf.Tensor2D, mask: AllowedMask, withEntropy: boolean): { logZ: tf.Tensor1D; entropy?: tf.Tensor1D } {
  const [N, V] = lsm.shape;
  const K = mask.width;
  if (mask.constrained.length !== N || mask.ids.length !== N * K || mask.valid.length !== N * K) {
    throw new GrpoError('GRPO_ERR_MODEL_INPUT', `allowed mask covers ${mask.constrained.length} positions of width ${K}; the batch has ${N}`);
  }
  if (N * V >= 2 ** 31) {
    throw new GrpoError('GRPO_ERR_MODEL_INPUT', `a grammar-masked batch of ${N} positions x ${V} tokens exceeds int32 indexing; lower micro_batch_size`);
  }
  const flat = new Int32Array(N * K); // position n's slot k -> n * V + id
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const id = mask.ids[n * K + k];
      if (id < 0 || id >= V) throw new GrpoError('GRPO_ERR_MODEL_INPUT', `allowed id ${id} is not a token id in [0, ${V})`);
      flat[n * K + k] = n * V + id;
    }
  }
  const g = tf.gather(lsm.reshape([N * V]), tf.tensor1d(flat, 'int32')).reshape([N, K]); // [N, K]
  const valid = tf.tensor2d(mask.valid, [N, K]);
  const gm = g.add(tf.scalar(1).sub(valid).mul(PAD_LOGIT)); // padding slots -> PAD_LOGIT
  const constrained = tf.tensor1d(mask.constrained);
  const logZAll = tf.logSumExp(gm, 1); // [N]
  const logZ = logZAll.mul(constrained) as tf.Tensor1D;
  if (!withEntropy) return { logZ };
  const centred = g.sub(logZAll.reshape([N, 1])).mul(valid); // log q over the allowed ids, 0 on padding
  const q = tf.exp(gm.sub(logZAll.reshape([N, 1]))); // [N, K], 0 on padding
  const maskedH = q.mul(centred).sum(1).neg(); // [N]
  const fullH = tf.exp(lsm).mul(lsm).sum(1).neg(); // [N]
  const entropy = maskedH.mul(constrained).add(fullH.mul(tf.scalar(1).sub(constrained))) as tf.Tensor1D;
  return { logZ, entropy };
}
