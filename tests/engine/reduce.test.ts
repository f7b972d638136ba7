/**
 * Native reductions (Sum, Mean, Max, Min) and Softmax against the cpu backend: every run of
 * adjacent axes, keepDims, fallbacks for non-adjacent axes, NaN, and the gradients of softmax
 * and logSoftmax that a language model's loss goes through.
 */
import { describe, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { expectSameOnBackends, nativeEngine, rand } from './compare.js';

const { skipReason } = await nativeEngine();

const AXES: (number | number[] | undefined)[] = [undefined, 0, 1, 2, -1, [0, 1], [1, 2], [0, 2], [0, 1, 2], []];

const REDUCERS: [string, (x: tf.Tensor, axis?: number | number[], keepDims?: boolean) => tf.Tensor][] = [
  ['sum', tf.sum],
  ['mean', tf.mean],
  ['max', tf.max],
  ['min', tf.min],
];

describe.skipIf(skipReason !== null)(`native reductions and softmax${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  for (const [name, op] of REDUCERS) {
    it(`${name} matches the reference over every axis set, with and without keepDims`, async () => {
      await expectSameOnBackends(() => {
        const x = rand([7, 13, 5], 1);
        return AXES.flatMap((axis) => [op(x, axis), op(x, axis, true)]);
      });
    });

    it(`${name} handles size-1 axes, long rows and NaN like the reference`, async () => {
      await expectSameOnBackends(() => {
        const x = rand([3, 1, 1000], 2);
        const withNaN = tf.tensor2d([[1, NaN, 3], [4, 5, 6]]);
        return [op(x, [1, 2]), op(x, 0), op(x.reshape([3, 1000, 1]), 1, true), op(withNaN, 1), op(withNaN, 0)];
      });
    });
  }

  it('sum and mean gradients match the reference', async () => {
    await expectSameOnBackends(() => {
      const x = rand([4, 6, 3], 3);
      return [tf.grad((v: tf.Tensor) => tf.sum(v, 1).square().sum())(x), tf.grad((v: tf.Tensor) => tf.mean(v, [0, 2]).square().sum())(x)];
    });
  });

  it('softmax matches the reference on attention-shaped and odd shapes, with masked entries', async () => {
    await expectSameOnBackends(() => {
      const scores = rand([2, 3, 16, 16], 4, 5);
      const mask = tf.linalg.bandPart(tf.ones([16, 16]), -1, 0).sub(1).mul(1e9); // 0 on and below the diagonal
      return [tf.softmax(scores.add(mask)), tf.softmax(rand([7, 13], 5, 30)), tf.softmax(rand([1], 6)), tf.softmax(rand([3, 100], 7))];
    });
  });

  it('softmax and logSoftmax gradients match the reference', async () => {
    await expectSameOnBackends(() => {
      const logits = rand([9, 64], 8, 3);
      const w = rand([9, 64], 9);
      return [
        tf.grad((z: tf.Tensor) => tf.softmax(z).mul(w).sum())(logits),
        tf.grad((z: tf.Tensor) => tf.logSoftmax(z).mul(w).sum())(logits),
        tf.logSoftmax(logits),
      ];
    });
  });
});
