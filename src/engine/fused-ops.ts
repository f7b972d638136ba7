/**
 * Ops that run as one fused kernel where the active backend has it (wasm and native: see
 * kernels/fused.ts) and as the equivalent chain of stock ops everywhere else, so callers never
 * branch on the backend. Each fused op matches its stock composition to float32 rounding
 * (tests/engine/fused-ops.test.ts checks values and gradients against the stock cpu backend).
 */
import { FusedKernel, type AdamWAttrs } from './kernels/fused.js';
import { tf } from './tf.js';

export type { AdamWAttrs } from './kernels/fused.js';

/** Whether the active backend runs `kernel` natively. */
export function hasFusedKernel(kernel: FusedKernel): boolean {
  return tf.getKernel(kernel, tf.getBackend()) !== undefined;
}

/**
 * One AdamW update of a parameter p with gradient g and moments m, v (all float32, one shape) as
 * one pass over memory: returns [p', m', v'] (the caller assigns and disposes), or null when the
 * backend has no fused kernel (the caller then composes stock ops). With `attrs.inPlace` the
 * caller promises to replace p, m and v by the results, and the kernel overwrites their memory
 * where no other tensor shares it (the results are then p, m, v's own data).
 */
export function fusedAdamW(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, attrs: AdamWAttrs): [tf.Tensor, tf.Tensor, tf.Tensor] | null {
  if (!hasFusedKernel(FusedKernel.AdamW)) return null;
  if ([p, g, m, v].some((t) => t.dtype !== 'float32')) return null;
  const out = tf.engine().runKernel(FusedKernel.AdamW, { p, g, m, v }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return [out[0], out[1], out[2]];
}

/**
 * SwiGLU of a fused gate/up projection: gu [N, 2I] (gate columns first) -> silu(gate) * up [N, I].
 * Differentiable in gu. Fused, the backward pass writes d gu [N, 2I] in one kernel, with no split
 * of gu in forward and no concat of the two halves' gradients in backward.
 */
export function swiglu(gu: tf.Tensor2D): tf.Tensor2D {
  if (!hasFusedKernel(FusedKernel.SwiGLU) || gu.dtype !== 'float32') {
    const [gate, up] = tf.split(gu, 2, 1); // [N, I] each
    return gate.mul(tf.sigmoid(gate)).mul(up) as tf.Tensor2D;
  }
  const op = tf.customGrad((...args) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    save([x]);
    return {
      value: tf.engine().runKernel(FusedKernel.SwiGLU, { gu: x }) as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.engine().runKernel(FusedKernel.SwiGLUGrad, { gu: saved[0], dy }) as tf.Tensor],
    };
  });
  return op(gu) as tf.Tensor2D;
}

/**
 * RMSNorm x * rsqrt(mean(x^2) + eps) * w over the last axis as one kernel each way, saving only
 * its inputs for backward; null when the backend has no fused kernel (model code then composes
 * stock ops, see llama-forward.ts). x [N, d] float32, w [d].
 */
export function fusedRmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D | null {
  if (!hasFusedKernel(FusedKernel.RmsNorm) || x.dtype !== 'float32' || w.dtype !== 'float32') return null;
  const op = tf.customGrad((...args) => {
    const [xIn, wIn, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    save([xIn, wIn]);
    return {
      value: tf.engine().runKernel(FusedKernel.RmsNorm, { x: xIn, w: wIn }, { eps }) as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.engine().runKernel(FusedKernel.RmsNormGrad, { x: saved[0], w: saved[1], dy }, { eps }) as tf.Tensor[],
    };
  });
  return op(x, w) as tf.Tensor2D;
}

/**
 * Rotary embedding with the half swap folded into the tables (src/model/rope.ts): x cos + swap(x)
 * sin, swap exchanging the two halves of the last axis, as one kernel each way; null when the
 * backend has no fused kernel or the shapes are not the model's (x [B, ...], tables [1 or B, ...]
 * with x's other dims, an even last axis). Differentiable in x only: the tables are constants.
 */
export function fusedRope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D | null {
  if (!hasFusedKernel(FusedKernel.Rope) || [x, cos, sin].some((t) => t.dtype !== 'float32')) return null;
  const hd = x.shape[3];
  const fits = (t: tf.Tensor4D) => (t.shape[0] === 1 || t.shape[0] === x.shape[0]) && t.shape.slice(1).every((n, d) => n === x.shape[d + 1]);
  if (hd % 2 !== 0 || !fits(cos) || !fits(sin) || cos.shape[0] !== sin.shape[0]) return null;
  const op = tf.customGrad((...args) => {
    const [xIn, save] = args as [tf.Tensor4D, tf.GradSaveFunc];
    save([cos, sin]); // kept for backward: the tables may be intermediates of the forward's scope
    return {
      value: tf.engine().runKernel(FusedKernel.Rope, { x: xIn, cos, sin }) as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.engine().runKernel(FusedKernel.RopeGrad, { x: dy, cos: saved[0], sin: saved[1] }) as tf.Tensor],
    };
  });
  return op(x) as tf.Tensor4D;
}
