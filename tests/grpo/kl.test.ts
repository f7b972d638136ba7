import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import type { Tensor } from '../../src/engine/tf.js';
import { k3Kl } from '../../src/grpo/index.js';
import { expectClose } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('k3Kl', () => {
  const logp = [-1, -0.5, -2, -3];
  const ref = [-1, -1.5, -0.5, -3.5];

  it('is exp(d) - d - 1 with d = ref - logp: >= 0, 0 where the policies agree', () => {
    const lp = tf.tensor2d([logp]);
    const rf = tf.tensor2d([ref]);
    const kl = k3Kl(lp, rf);
    const want = logp.map((l, i) => Math.exp(ref[i] - l) - (ref[i] - l) - 1);
    expectClose(kl.dataSync(), want, 1e-6, 1e-6);
    expect(kl.dataSync()[0]).toBe(0);
    expect(Array.from(kl.dataSync()).every((v) => v >= 0)).toBe(true);
    tf.dispose([lp, rf, kl]);
  });

  it('has gradient 1 - exp(ref - logp) wrt logp and none wrt ref', () => {
    const lp = tf.tensor2d([logp]);
    const rf = tf.tensor2d([ref]);
    const [gl, gr] = tf.grads((a: Tensor, b: Tensor) => tf.sum(k3Kl(a, b)))([lp, rf]);
    expectClose(gl.dataSync(), logp.map((l, i) => 1 - Math.exp(ref[i] - l)), 1e-6, 1e-6);
    expect(Array.from(gr.dataSync()).every((v) => v === 0)).toBe(true);
    tf.dispose([lp, rf, gl, gr]);
  });
});
