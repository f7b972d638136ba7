import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import type { Tensor2D } from '../../src/engine/tf.js';
import { LOSS_REDUCERS, LOSS_TYPES, resolveLossReducer } from '../../src/grpo/index.js';
import { expectCode } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

// Worked by hand: L = [[1, 2, 3], [4, 5, 6]], M = [[1, 1, 0], [1, 0, 0]]
//   masked sums per row: 3 and 4; tokens per row: 2 and 1; all tokens: 3
const L = [
  [1, 2, 3],
  [4, 5, 6],
];
const M = [
  [1, 1, 0],
  [1, 0, 0],
];

describe('LOSS_REDUCERS', () => {
  it('lists the four variants', () => {
    expect(LOSS_TYPES).toEqual(['grpo', 'bnpo', 'dr_grpo', 'dapo']);
    expect(Object.isFrozen(LOSS_REDUCERS)).toBe(true);
  });

  it('reduce by hand-worked values', () => {
    const l = tf.tensor2d(L) as Tensor2D;
    const m = tf.tensor2d(M) as Tensor2D;
    const before = tf.memory().numTensors;
    const value = (t: keyof typeof LOSS_REDUCERS, ctx = {}): number => {
      const s = LOSS_REDUCERS[t](l, m, ctx);
      const v = s.dataSync()[0];
      s.dispose();
      return v;
    };
    expect(value('grpo')).toBeCloseTo((3 / 2 + 4 / 1) / 2, 6); // 2.75
    expect(value('bnpo')).toBeCloseTo(7 / 3, 6);
    expect(value('dr_grpo', { maxCompletionLength: 10 })).toBeCloseTo(7 / 20, 6);
    expect(value('dapo', { numItemsInBatch: 14 })).toBeCloseTo(0.5, 6);
    expect(tf.memory().numTensors).toBe(before); // the reducers tidy their intermediates
    const empty = tf.zeros([2, 3]) as Tensor2D;
    const g = LOSS_REDUCERS.grpo(l, empty, {});
    const b = LOSS_REDUCERS.bnpo(l, empty, {});
    expect([g.dataSync()[0], b.dataSync()[0]]).toEqual([0, 0]); // no tokens: 0, not NaN
    tf.dispose([l, m, empty, g, b]);
  });

  it('names the missing context of dr_grpo and dapo', () => {
    const l = tf.tensor2d(L) as Tensor2D;
    expectCode(() => LOSS_REDUCERS.dr_grpo(l, l, {}), 'GRPO_ERR_BAD_OPTION', /maxCompletionLength/);
    expectCode(() => LOSS_REDUCERS.dapo(l, l, {}), 'GRPO_ERR_BAD_OPTION', /numItemsInBatch/);
    expectCode(() => LOSS_REDUCERS.dr_grpo(l, l, { maxCompletionLength: 0 }), 'GRPO_ERR_BAD_OPTION', /maxCompletionLength/);
    l.dispose();
  });

  it('resolves names and functions, rejects anything else', () => {
    const own = (): tf.Scalar => tf.scalar(0);
    expect(resolveLossReducer('bnpo')).toBe(LOSS_REDUCERS.bnpo);
    expect(resolveLossReducer(own)).toBe(own);
    expectCode(() => resolveLossReducer('toString' as never), 'GRPO_ERR_BAD_OPTION', /lossType/);
  });
});
