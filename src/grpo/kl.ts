/**
 * Per-token KL divergence of the policy from the frozen reference, k3 estimator (Schulman,
 * "Approximating KL divergence"), as in the DeepSeekMath GRPO objective:
 *
 *   kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1      (>= 0, unbiased for KL(pi || ref))
 *
 * with d kl_t / d logp_t = 1 - exp(ref_t - logp_t). `refLogp` is stop-gradient: only `logp`
 * (the policy being trained) carries a gradient.
 */
import { tf } from '../engine/tf.js';
import type { Tensor } from '../engine/tf.js';
import { stopGradient } from './stop-gradient.js';

/** logp, refLogp [B, T] -> kl [B, T] (nats per token; padding positions are not masked here). */
export function k3Kl<T extends Tensor>(logp: T, refLogp: T): T {
  return tf.tidy(() => {
    const d = tf.sub(stopGradient(refLogp), logp); // ref - logp, [B, T]
    return tf.sub(tf.sub(tf.exp(d), d), 1) as T;
  });
}
