/**
 * Fused kernels (AdamW, SwiGLU, RMSNorm) on the wasm and native backends against the same math
 * composed of stock ops on the cpu backend: values and gradients, odd and empty shapes, large
 * inputs where sigmoid saturates, and the fallback on a backend without the kernels.
 */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { fusedAdamW, fusedRmsNorm, fusedRope, hasFusedKernel, swiglu } from '../../src/engine/fused-ops.js';
import { FusedKernel } from '../../src/engine/kernels/fused.js';
import { tf } from '../../src/engine/tf.js';
import { AdamW } from '../../src/optim/adamw.js';
import { expectClose, expectSameOnBackends, nativeEngine, rand, runOn } from './compare.js';

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

  it('rope matches x cos + swap(x) sin and its gradient, with tables shared by the batch or per row', async () => {
    await expectSameOnBackends(() =>
      [[3, 5, 4, 8, 1], [2, 1, 3, 2, 2], [4, 7, 6, 64, 4]].flatMap(([B, T, H, hd, Bc], i) => {
        const x = rand([B, T, H, hd], 100 + i) as tf.Tensor4D;
        const cos = rand([Bc, T, H, hd], 110 + i) as tf.Tensor4D;
        const sin = rand([Bc, T, H, hd], 120 + i) as tf.Tensor4D;
        const dy = rand([B, T, H, hd], 130 + i);
        const composed = (v: tf.Tensor4D) => {
          const swapped = tf.reverse(v.reshape([-1, 2, hd / 2]), 1).reshape(v.shape);
          return v.mul(cos).add(swapped.mul(sin)) as tf.Tensor4D;
        };
        const rope = (v: tf.Tensor4D) => fusedRope(v, cos, sin) ?? composed(v);
        // tables made inside the differentiated function, as the model makes them, must outlive its forward scope
        const inside = (v: tf.Tensor) => {
          const [c, s] = [cos.mul(2), sin.mul(2)] as tf.Tensor4D[];
          return (fusedRope(v as tf.Tensor4D, c, s) ?? composed(v as tf.Tensor4D).mul(2)).mul(dy).sum();
        };
        return [rope(x), tf.grad((v: tf.Tensor) => rope(v as tf.Tensor4D).mul(dy).sum())(x), tf.grad(inside)(x)];
      }),
    );
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

  it('AdamW steps on wasm and native (in place after the first) equal the stock-op update on cpu', async () => {
    const steps = () => {
      const params = new Map([['w', tf.variable(rand([33, 7], 1))], ['b', tf.variable(rand([5], 2))]]);
      const opt = new AdamW(params, { weightDecay: 0.1 });
      for (let t = 0; t < 3; t++) {
        const grads = new Map([...params].map(([k, v], i) => [k, tf.tidy(() => v.mul(v).add(rand(v.shape, 10 * t + i, 0.1)))]));
        opt.apply(grads, 1e-2);
        tf.dispose([...grads.values()]);
      }
      const out = [...params.values()].map((v) => v.clone());
      opt.dispose();
      tf.dispose([...params.values()]);
      return out;
    };
    const reference = await runOn('cpu', steps);
    for (const backend of ['wasm', 'native'] as const) expectClose(await runOn(backend, steps), reference);
  });

  it('never updates in place memory that another tensor or a reader holds', async () => {
    for (const backend of ['wasm', 'native'] as const) {
      await initEngine({ backend, log: () => {} });
      const w = tf.variable(tf.ones([64]));
      const opt = new AdamW(new Map([['w', w]]));
      const g = tf.fill([64], 0.5);
      opt.apply(new Map([['w', g]]), 0.1); // first step: fresh buffers, the pool's
      const before = Array.from(w.dataSync()); // on native, the backend's own array: a reader holds it
      const held = w.dataSync();
      const copy = w.clone(); // shares w's data
      opt.apply(new Map([['w', g]]), 0.1);
      expect(Array.from(copy.dataSync()), backend).toEqual(before);
      expect(Array.from(held), backend).toEqual(before);
      expect(w.dataSync()[0], backend).toBeLessThan(before[0]); // and w itself moved
      const numTensors = tf.memory().numTensors;
      copy.dispose();
      opt.apply(new Map([['w', g]]), 0.1); // in place now on wasm (no sharer left)
      expect(tf.memory().numTensors).toBe(numTensors - 1);
      // a parameter nobody reads or shares is updated in place from the second step on
      const u = tf.variable(tf.ones([64]));
      const optU = new AdamW(new Map([['u', u]]));
      optU.apply(new Map([['u', g]]), 0.1);
      const id = u.dataId;
      optU.apply(new Map([['u', g]]), 0.1);
      expect(u.dataId, backend).toBe(id);
      tf.dispose([w, g, u]);
      opt.dispose();
      optU.dispose();
    }
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
