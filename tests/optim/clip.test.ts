import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { clipByGlobalNorm, globalNorm } from '../../src/optim/clip.js';

beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} }); // the engine training runs on
});

describe('clipByGlobalNorm', () => {
  const grads = () =>
    new Map([
      ['a', tf.tensor([3, 0])],
      ['b', tf.tensor([[0, 4]])],
    ]); // global norm sqrt(9 + 16) = 5

  it('scales every gradient by maxNorm / (norm + 1e-6) when the norm is larger, and returns the pre-clip norm', async () => {
    const g = grads();
    const { grads: out, norm } = clipByGlobalNorm(g, 1);
    expect(await norm.data()).toEqual(new Float32Array([5]));
    const s = 1 / (5 + 1e-6);
    Array.from(await out.get('a')!.data()).forEach((x, i) => expect(x).toBeCloseTo([3 * s, 0][i], 6));
    Array.from(await out.get('b')!.data()).forEach((x, i) => expect(x).toBeCloseTo([0, 4 * s][i], 6));
    expect(out.get('b')!.shape).toEqual([1, 2]);
    tf.dispose([...g.values(), ...out.values(), norm]);
  });

  it('leaves gradients alone below the limit and with maxNorm 0', async () => {
    for (const max of [10, 0]) {
      const g = grads();
      const { grads: out, norm } = clipByGlobalNorm(g, max);
      expect(Array.from(await out.get('a')!.data())).toEqual([3, 0]);
      expect((await norm.data())[0]).toBe(5);
      tf.dispose([...g.values(), ...out.values(), norm]);
    }
  });

  it('handles zero gradients without NaN, rejects bad limits, and leaks nothing', async () => {
    const z = new Map([['a', tf.zeros([3])]]);
    const { grads: out, norm } = clipByGlobalNorm(z, 1);
    expect(Array.from(await out.get('a')!.data())).toEqual([0, 0, 0]);
    expect((await norm.data())[0]).toBe(0);
    tf.dispose([...out.values(), norm]);
    expect(() => clipByGlobalNorm(z, -1)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_OPTIMIZER' }));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const r = clipByGlobalNorm(z, 0.5);
      tf.dispose([...r.grads.values(), r.norm]);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...z.values()]);
    const n = globalNorm([]);
    expect((await n.data())[0]).toBe(0);
    n.dispose();
  });
});
