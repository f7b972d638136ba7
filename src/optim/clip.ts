/**
 * Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ does it: the L2 norm over all
 * gradients together, and when it exceeds `maxNorm` every gradient is scaled by
 * maxNorm / (norm + 1e-6). The pre-clip norm is returned as a tensor so the caller can read it
 * together with the loss in the step's one host read.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';

const EPS = 1e-6; // torch's guard against dividing by a zero norm

/** sqrt(sum of squares of every element of every tensor); 0 for none. Synchronous. */
export function globalNorm(tensors: Iterable<tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    let sumSq: tf.Scalar = tf.scalar(0);
    // each square is freed as soon as it is summed: a tidy would hold one per parameter (4 bytes
    // per parameter of the model at once)
    for (const t of tensors) {
      const sq = t.square();
      const part = sq.sum();
      sq.dispose();
      sumSq = sumSq.add(part);
    }
    return sumSq.sqrt();
  });
}

/**
 * Clipped copies of `grads` and the norm before clipping. `maxNorm` 0 turns clipping off (the
 * copies are the gradients unchanged). The caller disposes the returned tensors and still owns
 * the inputs. Synchronous; no host read.
 */
export function clipByGlobalNorm<K>(grads: ReadonlyMap<K, tf.Tensor>, maxNorm: number): { grads: Map<K, tf.Tensor>; norm: tf.Scalar } {
  if (!Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new GrpoError('GRPO_ERR_OPTIMIZER', `max gradient norm is ${maxNorm}; it must be finite and >= 0 (0 = no clipping)`);
  }
  const keys = [...grads.keys()];
  const [norm, ...clipped] = tf.tidy(() => {
    const gs = [...grads.values()];
    const n = globalNorm(gs);
    if (maxNorm === 0) return [n, ...gs.map((g) => g.clone())];
    const scale = tf.minimum(tf.scalar(maxNorm).div(n.add(EPS)), 1); // [] in (0, 1]
    return [n, ...gs.map((g) => g.mul(scale))];
  });
  return { grads: new Map(keys.map((k, i) => [k, clipped[i]])), norm: norm as tf.Scalar };
}
