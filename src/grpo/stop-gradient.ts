/**
 * stopGradient(x): the value of x, with a zero gradient (tfjs has no such op). GRPO needs it
 * wherever a tensor may share history with `logp`: in the on-policy case `oldLogp` *is* `logp`
 * (same values, same tape), and the ratio exp(logp - sg(logp)) must be 1 with gradient d logp,
 * not exp(0) with gradient 0. Advantages, the reference log-probs and the mask go through it too,
 * so the gradient of the loss flows only through `logp` (and the optional entropy input).
 */
import { tf } from '../engine/tf.js';
import type { Tensor } from '../engine/tf.js';

// customGrad passes the inputs followed by a save function; only the first input is ours
const stopGradientOp = tf.customGrad((...args) => ({
  value: tf.clone(args[0] as Tensor),
  gradFunc: (dy: Tensor) => [tf.zerosLike(dy)],
}));

export function stopGradient<T extends Tensor>(x: T): T {
  return stopGradientOp(x) as T;
}
