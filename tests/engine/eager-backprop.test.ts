import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';

// A chain of n ops, each a custom gradient that saves a 1 MB tensor for its backward pass.
function chain(x: tf.Tensor1D, n: number, seen: number[]): tf.Tensor1D {
  const op = tf.customGrad((...args) => {
    const [a, save] = args as [tf.Tensor1D, tf.GradSaveFunc];
    save([tf.fill([256 * 1024], 2)]); // 1 MB, used only by this node's gradient
    return {
      value: a.mul(2),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        seen.push(tf.memory().numBytes);
        return [dy.mul(saved[0].slice([0], [dy.size]))];
      },
    };
  });
  let h = x;
  for (let i = 0; i < n; i++) h = op(h) as tf.Tensor1D;
  return h;
}

describe('eager backward pass', () => {
  it('gives the same gradients and frees the saved tensors of each node as the backward pass goes', () => {
    const x = tf.tensor1d([1, -2, 3]);
    const seen: number[] = [];
    const before = tf.memory().numTensors;
    const g = tf.grad((v: tf.Tensor) => chain(v as tf.Tensor1D, 8, seen).sum())(x);
    expect(Array.from(g.dataSync())).toEqual([256, 256, 256]); // d/dx sum(2^8 x)
    // the first gradFunc runs with all 8 saved blocks alive, the last with only its own
    expect(seen).toHaveLength(8);
    expect(seen[0] - seen[7]).toBeGreaterThanOrEqual(7 * 2 ** 20 - 4096);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('matches the gradients of a small network exactly, tensor counts flat over calls', () => {
    const w = tf.variable(tf.tensor2d([0.5, -1, 2, 0.25, 1.5, -0.75], [3, 2]));
    const x = tf.tensor2d([1, 2, 3, -1, 0.5, 4], [2, 3]);
    const f = () => tf.tanh(x.matMul(w)).square().mean() as tf.Scalar;
    const run = () => {
      const { value, grads } = tf.variableGrads(f, [w]);
      const out = Array.from(grads[w.name].dataSync());
      tf.dispose([value, grads[w.name]]);
      return out;
    };
    const first = run();
    const count = tf.memory().numTensors;
    // analytic: d/dw mean(tanh(xw)^2) = x^T (2 t (1 - t^2)) / 4
    const expected = tf.tidy(() => {
      const t = tf.tanh(x.matMul(w));
      return Array.from(x.transpose().matMul(t.mul(2).mul(tf.scalar(1).sub(t.square()))).div(4).dataSync());
    });
    first.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
    expect(run()).toEqual(first);
    expect(tf.memory().numTensors).toBe(count);
    tf.dispose([w, x]);
  });
});
