/**
 * Fused kernels (AdamW, SwiGLU, RMSNorm) on the wasm and native backends against the same math
 * composed of stock ops on the cpu backend: values and gradients, odd and empty shapes, large
 * inputs where sigmoid saturates, and the fallback on a backend without the kernels.
 */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { fusedAdamW, fusedRmsNorm, hasFusedKernel, swiglu } from '../../src/engine/fused-ops.js';
import { FusedKernel } from '../../src/engine/kernels/fused.js';
import { tf } from '../../src/engine/tf.js';
import { expectSameOnBackends, nativeEngine, rand } from './compare.js';

const { skipReason } = await nativeEngine();

/** The reference RMSNorm: plain ops, tfjs's own gradients. */
function composedRmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  return x.mul(x.mul(x).mean(-1, true).add(eps).rsqrt()).mul(w) as tf.Tensor2D;
}

function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  return fusedRmsNorm(x, w, eps) ?? composedRmsNorm(x, w, eps);
}

const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, stepSize: 1e-3 / (1 - 0.9 ** 3), bc2Sqrt: Math.sqrt(1 - 0.999 ** 3), decay: 1 - 1e-3 * 0.1 };

/** The reference update, the ops of src/optim/adamw.ts. */
function composedAdamW(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor): tf.Tensor[] {
  const { beta1, beta2, eps, stepSize, bc2Sqrt, decay } = ADAM;
  const m1 = m.mul(beta1).add(g.mul(1 - beta1));
  const v1 = v.mul(beta2).add(g.square().mul(1 - beta2));
  const denom = v1.sqrt().div(bc2Sqrt).add(eps);
  return [p.mul(decay).sub(m1.div(denom).mul(stepSize)), m1, v1];
}

describe.skipIf(skipReason !== null)(`fused kernels${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('swiglu matches silu(gate) * up and its gradient, on odd shapes and saturating inputs', async () => {
    await expectSameOnBackends(() =>
      [[7, 26], [1, 2], [33, 600]].flatMap(([n, w], i) => {
        const gu = rand([n, w], 10 + i, i === 0 ? 20 : 3) as tf.Tensor2D;
        const up = rand([n, w / 2], 20 + i) as tf.Tensor2D;
        const loss = (x: tf.Tensor) => swiglu(x as tf.Tensor2D).mul(up).sum();
        return [swiglu(gu), tf.grad(loss)(gu)];
      }),
    );
  });

  it('swiglu of an empty batch is empty', async () => {
    await expectSameOnBackends(() => swiglu(tf.zeros([0, 6]) as tf.Tensor2D));
  });

  it('rmsNorm matches the composed norm: values, d x and d w, odd widths', async () => {
    await expectSameOnBackends(() =>
      [[5, 7], [1, 3], [37, 576], [300, 64]].flatMap(([n, d], i) => {
        const x = rand([n, d], 30 + i, 4) as tf.Tensor2D;
        const w = rand([d], 40 + i) as tf.Tensor1D;
        const dy = rand([n, d], 50 + i) as tf.Tensor2D;
        const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5).mul(dy).sum())([x, w]);
        return [rmsNorm(x, w, 1e-5), dx, dw];
      }),
    1e-4);
  });

  it('adamw gives the composed update of parameter and moments, on odd sizes', async () => {
    await expectSameOnBackends(() =>
      [[3, 5], [1], [4097]].flatMap((shape, i) => {
        const [p, g, m] = [rand(shape, 60 + i), rand(shape, 70 + i, 0.1), rand(shape, 80 + i, 0.01)];
        const v = rand(shape, 90 + i, 1e-4).abs();
        return fusedAdamW(p, g, m, v, ADAM) ?? composedAdamW(p, g, m, v);
      }),
    );
  });

  it('runs the fused kernels on wasm and native, and composes stock ops on cpu', async () => {
    for (const backend of ['wasm', 'native', 'cpu'] as const) {
      await initEngine({ backend, log: () => {} });
      for (const k of Object.values(FusedKernel)) expect(hasFusedKernel(k), `${k} on ${backend}`).toBe(backend !== 'cpu');
      const x = tf.ones([2, 4]);
      const out = fusedAdamW(x, x, x, x, ADAM);
      expect(out === null).toBe(backend === 'cpu');
      tf.dispose([x, ...(out ?? [])]);
    }
  });
});
