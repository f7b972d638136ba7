import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import type { Tensor } from '../../src/engine/tf.js';
import { stopGradient } from '../../src/grpo/index.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('stopGradient', () => {
  it('keeps the value and blocks the gradient, so exp(x - sg(x)) has gradient exp(0) = 1', () => {
    const x = tf.tensor1d([0.5, -2, 3]);
    const before = tf.memory().numTensors;
    const y = stopGradient(x);
    expect(Array.from(y.dataSync())).toEqual([0.5, -2, 3]);
    const g = tf.grad((a: Tensor) => tf.sum(tf.exp(tf.sub(a, stopGradient(a)))))(x);
    expect(Array.from(g.dataSync())).toEqual([1, 1, 1]);
    const g0 = tf.grad((a: Tensor) => tf.sum(tf.mul(stopGradient(a), 3)))(x);
    expect(Array.from(g0.dataSync()).map(Math.abs)).toEqual([0, 0, 0]);
    tf.dispose([y, g, g0]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
