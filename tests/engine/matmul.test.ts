/**
 * The native BatchMatMul / _FusedMatMul kernels against the cpu backend's: values and gradients
 * on odd shapes, every transpose combination, batched 3-D and 4-D operands, broadcast batches.
 */
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { expectClose, expectSameOnBackends, nativeEngine, rand, runOn } from './compare.js';

const { skipReason } = await nativeEngine();
const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

/** Operand shapes for op(a) [.., M, K] x op(b) [.., K, N] with the given batch dims. */
function shapes(batchA: number[], batchB: number[], M: number, K: number, N: number, tA: boolean, tB: boolean): [number[], number[]] {
  return [
    [...batchA, ...(tA ? [K, M] : [M, K])],
    [...batchB, ...(tB ? [N, K] : [K, N])],
  ];
}

describe.skipIf(skipReason !== null)(`native matMul${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('multiplies 1x1 matrices', async () => {
    await expectSameOnBackends(() => tf.matMul(tf.tensor2d([[3]]), tf.tensor2d([[-2]])));
  });

  for (const [tA, tB] of TRANSPOSES) {
    it(`matches the reference for 7x13 x 13x5, transposeA=${tA} transposeB=${tB}: values and gradients`, async () => {
      const [sa, sb] = shapes([], [], 7, 13, 5, tA, tB);
      await expectSameOnBackends(() => {
        const a = rand(sa, 1);
        const b = rand(sb, 2);
        const dy = rand([7, 5], 3);
        const f = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D, tA, tB).mul(dy).sum();
        const [ga, gb] = tf.grads(f)([a, b]);
        return [tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, tA, tB), ga, gb];
      });
    });

    it(`matches the reference for batched 3-D operands, transposeA=${tA} transposeB=${tB}: values and gradients`, async () => {
      const [sa, sb] = shapes([3], [3], 6, 9, 4, tA, tB);
      await expectSameOnBackends(() => {
        const a = rand(sa, 4);
        const b = rand(sb, 5);
        const dy = rand([3, 6, 4], 6);
        const f = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB).mul(dy).sum();
        const [ga, gb] = tf.grads(f)([a, b]);
        return [tf.matMul(a, b, tA, tB), ga, gb];
      });
    });

    it(`matches the reference for 4-D operands, transposeA=${tA} transposeB=${tB}`, async () => {
      const [sa, sb] = shapes([2, 3], [2, 3], 5, 7, 3, tA, tB);
      await expectSameOnBackends(() => tf.matMul(rand(sa, 7), rand(sb, 8), tA, tB));
    });

    it(`broadcasts a 2-D right operand over the batch, transposeA=${tA} transposeB=${tB}`, async () => {
      const [sa, sb] = shapes([4], [], 5, 6, 3, tA, tB);
      await expectSameOnBackends(() => tf.matMul(rand(sa, 9), rand(sb, 10), tA, tB));
    });

    it(`broadcasts a batch of size 1 on the left, transposeA=${tA} transposeB=${tB}`, async () => {
      const [sa, sb] = shapes([1], [4], 5, 6, 3, tA, tB);
      await expectSameOnBackends(() => tf.matMul(rand(sa, 11), rand(sb, 12), tA, tB));
    });
  }

  it('broadcasts batch dimensions both ways like numpy ([2,1] with [1,3])', async () => {
    const make = (tile: boolean) => () => {
      let a = rand([2, 1, 4, 5], 13);
      let b = rand([1, 3, 5, 2], 14);
      if (tile) {
        // the cpu kernel indexes batches modulo their count, so give it explicit copies
        a = a.tile([1, 3, 1, 1]);
        b = b.tile([2, 1, 1, 1]);
      }
      return tf.matMul(a, b);
    };
    const reference = await runOn('cpu', make(true));
    const actual = await runOn('wasm', make(false));
    expect(actual[0].shape).toEqual([2, 3, 4, 2]);
    expectClose(actual, reference);
  });

  it('matches the reference on model-sized shapes (forward and backward)', async () => {
    await expectSameOnBackends(() => {
      const x = rand([96, 64], 15);
      const w = rand([80, 64], 16, 0.1);
      const [gx, gw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p as tf.Tensor2D, q as tf.Tensor2D, false, true).square().sum())([x, w]);
      return [gx, gw];
    });
  });

  it('returns an empty result for a zero-sized dimension and zeros for K = 0', async () => {
    await expectSameOnBackends(() => [tf.matMul(tf.zeros([0, 3]), tf.zeros([3, 4])), tf.matMul(tf.zeros([2, 0]), tf.zeros([0, 4]))]);
  });

  it('rejects mismatched inner dimensions', async () => {
    await runOn('wasm', () => {
      expect(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/inner shapes/);
      return tf.scalar(0);
    });
  });

  for (const activation of ['linear', 'relu', 'sigmoid', 'elu', 'relu6', 'leakyrelu'] as const) {
    it(`fused matMul with bias and ${activation} matches the reference: values and gradients`, async () => {
      await expectSameOnBackends(() => {
        const a = rand([2, 5, 7], 17);
        const b = rand([2, 6, 7], 18);
        const bias = rand([6], 19);
        const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
          tf.fused.matMul({ a: x, b: y, transposeB: true, bias: z, activation }).sum();
        const [ga, gb, gbias] = tf.grads(f)([a, b, bias]);
        return [tf.fused.matMul({ a, b, transposeB: true, bias, activation }), ga, gb, gbias];
      });
    });
  }

  it('fused matMul with prelu matches the reference', async () => {
    await expectSameOnBackends(() =>
      tf.fused.matMul({ a: rand([3, 4, 5], 20), b: rand([3, 5, 6], 21), bias: rand([6], 22), activation: 'prelu', preluActivationWeights: rand([6], 23) }),
    );
  });
});
