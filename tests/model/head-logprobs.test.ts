/**
 * The chunked head log-probabilities against the plain formula (full logits, log-softmax, one-hot
 * pick): values, entropies and gradients in both inputs, for chunk sizes that split the rows
 * unevenly, with and without temperature.
 */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { headLogProbs } from '../../src/model/head-logprobs.js';
import { expectClose, rand } from '../engine/compare.js';

await initEngine({ backend: 'cpu', log: () => {} });

const N = 7;
const d = 5;
const V = 11;
const targets = [0, 10, 3, 3, 7, 1, 10];

/** The plain [N, V] computation. */
function reference(hn: tf.Tensor2D, head: tf.Tensor2D, tg: tf.Tensor1D, temperature: number): { logp: tf.Tensor1D; entropy: tf.Tensor1D } {
  const lsm = tf.logSoftmax(tf.matMul(hn, head, false, true).div(temperature));
  const logp = lsm.mul(tf.oneHot(tg, V).cast('float32')).sum(1) as tf.Tensor1D;
  const entropy = tf.exp(lsm).mul(lsm).sum(1).neg() as tf.Tensor1D;
  return { logp, entropy };
}

function host(ts: tf.Tensor[]) {
  return ts.map((t) => ({ shape: [...t.shape], dtype: t.dtype, values: Array.from(t.dataSync()) }));
}

describe('headLogProbs', () => {
  for (const [chunkRows, temperature] of [
    [N, 1],
    [3, 1],
    [1, 0.7],
    [4, 1.3],
  ] as const) {
    it(`matches log-softmax + one-hot, entropy and gradients (chunks of ${chunkRows} rows, temperature ${temperature})`, () => {
      const before = tf.memory().numTensors;
      const [want, got] = tf.tidy(() => {
        const hn = rand([N, d], 1) as tf.Tensor2D;
        const head = rand([V, d], 2, 2) as tf.Tensor2D;
        const tg = tf.tensor1d(targets, 'int32');
        const gl = rand([N], 3);
        const ge = rand([N], 4);
        const loss = (f: typeof reference) => (a: tf.Tensor, b: tf.Tensor) => {
          const r = f(a as tf.Tensor2D, b as tf.Tensor2D, tg, temperature);
          return r.logp.mul(gl).add(r.entropy.mul(ge)).sum();
        };
        const chunked = (a: tf.Tensor2D, b: tf.Tensor2D, t: tf.Tensor1D, temp: number) => {
          const r = headLogProbs(a, b, t, { temperature: temp, withEntropy: true, chunkRows });
          return { logp: r.logp, entropy: r.entropy! };
        };
        const r0 = reference(hn, head, tg, temperature);
        const r1 = chunked(hn, head, tg, temperature);
        return [
          [r0.logp, r0.entropy, ...tf.grads(loss(reference))([hn, head])],
          [r1.logp, r1.entropy, ...tf.grads(loss(chunked))([hn, head])],
        ];
      });
      expectClose(host(got), host(want), 1e-4);
      tf.dispose([...want, ...got]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('returns logp alone, with gradients, when entropy is not asked for', () => {
    const [want, got] = tf.tidy(() => {
      const hn = rand([N, d], 5) as tf.Tensor2D;
      const head = rand([V, d], 6) as tf.Tensor2D;
      const tg = tf.tensor1d(targets, 'int32');
      const r = headLogProbs(hn, head, tg, { chunkRows: 2 });
      expect(r.entropy).toBeUndefined();
      const g1 = tf.grads((a: tf.Tensor, b: tf.Tensor) => headLogProbs(a as tf.Tensor2D, b as tf.Tensor2D, tg, { chunkRows: 2 }).logp.sum())([hn, head]);
      const g0 = tf.grads((a: tf.Tensor, b: tf.Tensor) => reference(a as tf.Tensor2D, b as tf.Tensor2D, tg, 1).logp.sum())([hn, head]);
      return [[reference(hn, head, tg, 1).logp, ...g0], [r.logp, ...g1]];
    });
    expectClose(host(got), host(want), 1e-4);
    tf.dispose([...want, ...got]);
  });
});
