/**
 * Native data-movement kernels (strided copy, gather, segment sum, cast) and the portable
 * OneHot / UnsortedSegmentSum against the cpu backend, values and gradients.
 */
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { expectSameOnBackends, nativeEngine, rand, runOn } from './compare.js';

const { skipReason } = await nativeEngine();

const ints = (values: number[], shape?: number[]) => tf.tensor(values, shape, 'int32');

describe.skipIf(skipReason !== null)(`native data-movement kernels${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('transpose matches the reference for every permutation of a 4-D tensor, float32, int32 and bool', async () => {
    const perms: number[][] = [];
    const permute = (prefix: number[], rest: number[]) => {
      if (rest.length === 0) perms.push(prefix);
      rest.forEach((d, i) => permute([...prefix, d], [...rest.slice(0, i), ...rest.slice(i + 1)]));
    };
    permute([], [0, 1, 2, 3]);
    await expectSameOnBackends(() => {
      const x = rand([2, 3, 4, 5], 1);
      const xi = x.mul(100).cast('int32');
      const xb = x.greater(0);
      return perms.flatMap((p) => [tf.transpose(x, p), tf.transpose(xi, p), tf.transpose(xb, p)]);
    });
  });

  it('slice, split and their gradients match the reference', async () => {
    await expectSameOnBackends(() => {
      const x = rand([6, 7, 5], 2);
      const parts = tf.split(x, [2, 1, 4], 1);
      const g = tf.grad((v: tf.Tensor) => tf.slice(v, [1, 2, 0], [3, -1, 4]).square().sum())(x);
      return [tf.slice(x, [1, 0, 2], [4, 7, 2]), tf.slice(x, 2), ...parts, ...tf.split(x, 3, 0), g];
    });
  });

  it('concat matches the reference on every axis, with mixed sizes and int32', async () => {
    await expectSameOnBackends(() => {
      const a = rand([2, 3, 4], 3);
      const b = rand([2, 5, 4], 4);
      const c = rand([2, 1, 4], 5);
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.concat([x, y], 1).square().sum())([a, b]);
      return [
        tf.concat([a, b, c], 1),
        tf.concat([a, a], 0),
        tf.concat([a, a.mul(2)], 2),
        tf.concat([ints([1, 2]), ints([3])], 0),
        ...g,
      ];
    });
  });

  it('reverse matches the reference for one and several axes', async () => {
    await expectSameOnBackends(() => {
      const x = rand([4, 2, 3], 6);
      return [tf.reverse(x, 1), tf.reverse(x, [0, 2]), tf.reverse(x, [0, 1, 2]), tf.reverse(x.reshape([24]))];
    });
  });

  it('tile and pad match the reference', async () => {
    await expectSameOnBackends(() => {
      const x = rand([2, 3], 7);
      return [tf.tile(x, [2, 3]), tf.tile(x.reshape([2, 1, 3]), [1, 4, 1]), tf.pad(x, [[1, 0], [2, 3]], 0.5), tf.pad(ints([1, 2, 3]), [[2, 1]])];
    });
  });

  it('gather matches the reference on axis 0 and 1, with its gradient (UnsortedSegmentSum)', async () => {
    await expectSameOnBackends(() => {
      const table = rand([9, 6], 8);
      const idx = ints([3, 0, 3, 8, 1, 3, 7], [7]);
      const idx2 = ints([2, 2, 0, 5], [2, 2]);
      const g = tf.grad((t: tf.Tensor) => tf.gather(t, idx).mul(rand([7, 6], 9)).sum())(table);
      return [tf.gather(table, idx), tf.gather(table, idx2), tf.gather(table, ints([5, 1]), 1), tf.gather(table.mul(10).cast('int32'), idx), g];
    });
  });

  it('gather rejects an index outside the table', async () => {
    await runOn('wasm', () => {
      expect(() => tf.gather(rand([4, 2], 10), ints([1, 4]))).toThrow(/indices must lie in \[0, 3\]/);
      return tf.scalar(0);
    });
  });

  it('unsortedSegmentSum matches the reference and drops out-of-range ids', async () => {
    await expectSameOnBackends(() => tf.unsortedSegmentSum(rand([6, 5], 11), ints([2, 0, 2, 3, 0, 2]), 4));
    const [out] = await runOn('wasm', () => tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]]), ints([1, -1, 7]), 2));
    expect(out.values).toEqual([0, 0, 1, 2]);
  });

  it('cast matches the reference between float32, int32 and bool', async () => {
    await expectSameOnBackends(() => {
      const x = tf.tensor1d([-2.7, -0.5, 0, 0.5, 2.7, 1e6]);
      return [x.cast('int32'), x.cast('bool'), x.cast('int32').cast('float32'), x.greater(0).cast('float32'), x.cast('float32')];
    });
  });

  it('oneHot gives 0/1 floats (the stock wasm kernel writes int bit patterns)', async () => {
    await expectSameOnBackends(() => [tf.oneHot(ints([1, 0, 3, 9]), 4), tf.oneHot(ints([2, 2]), 3, 5, -1, 'float32'), tf.oneHot(ints([0, 2], [2]), 3, 1, 0, 'int32')]);
  });

  it('native: contiguous split parts and large slices view their source, which can then be freed safely', async () => {
    await runOn('native', () => {
      const x = tf.range(0, 24, 1, 'float32').mul(1).reshape([6, 4]); // a pooled kernel output
      const want = Array.from(x.dataSync());
      const y = x.add(0); // not read: its buffer is the pool's and private
      const [top, bottom] = tf.split(y, [2, 4], 0);
      const half = tf.slice(y, [3, 0], [3, 4]);
      const small = tf.slice(y, [5, 0], [1, 4]); // under half of y: a copy
      const buffer = (t: tf.Tensor) => ((tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(t.dataId).values.buffer);
      expect(buffer(top)).toBe(buffer(y));
      expect(buffer(bottom)).toBe(buffer(y));
      expect(buffer(half)).toBe(buffer(y));
      expect(buffer(small)).not.toBe(buffer(y));
      y.dispose();
      for (let i = 0; i < 4; i++) tf.tidy(() => tf.ones([6, 4]).mul(7)); // would reuse y's buffer if it were freed
      expect(Array.from(top.dataSync())).toEqual(want.slice(0, 8));
      expect(Array.from(bottom.dataSync())).toEqual(want.slice(8));
      expect(Array.from(half.dataSync())).toEqual(want.slice(12));
      expect(Array.from(small.dataSync())).toEqual(want.slice(20));
      x.dispose();
      return [top, bottom, half, small];
    });
  });

  it('identity and same-dtype cast share data instead of copying', async () => {
    await runOn('wasm', () => {
      const x = rand([3, 3], 12);
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const before = backend.numDataIds();
      const copies = [tf.clone(x), x.cast('float32')];
      expect(backend.numDataIds()).toBe(before);
      expect(Array.from(copies[0].dataSync())).toEqual(Array.from(x.dataSync()));
      return copies;
    });
  });
});
