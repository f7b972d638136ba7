/**
 * The engine without the native addon (GRPO_NATIVE=0, as on a machine where it did not build):
 * stock wasm plus the portable JS kernels, a one-line warning saying how much slower and how to
 * fix it, and training still correct (gather's gradient needs UnsortedSegmentSum, which stock
 * wasm lacks; oneHot must give real 0/1 floats).
 */
import { describe, expect, it } from 'vitest';

process.env.GRPO_NATIVE = '0'; // read when the engine first loads the addon, below

const { initEngine } = await import('../../src/engine/backend.js');
const { tf } = await import('../../src/engine/tf.js');
const { expectSameOnBackends, rand } = await import('./compare.js');

describe('wasm without native kernels', () => {
  it('warns once with the slowdown and the fix, and installs only the portable kernels', async () => {
    const lines: string[] = [];
    const info = await initEngine({ backend: 'wasm', log: (l) => lines.push(l) });
    expect(info.native).toBe(false);
    expect(info.kernels).toEqual(['Cast', 'Identity', 'OneHot', 'UnsortedSegmentSum']);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\[engine\] backend=wasm .* native=no /);
    expect(lines[1]).toMatch(/^\[engine\] warning: native kernels unavailable \(disabled by GRPO_NATIVE=0\): training runs 10-30x slower/);
    expect(lines[1]).toContain('apt-get install libopenblas-dev && npm run build:native');
  });

  it('computes gather gradients with the JS UnsortedSegmentSum like the reference', async () => {
    await expectSameOnBackends(() => {
      const table = rand([9, 6], 1);
      const idx = tf.tensor1d([3, 0, 3, 8, 1], 'int32');
      return [tf.grad((t: tf.Tensor) => tf.gather(t, idx).square().sum())(table), tf.unsortedSegmentSum(rand([4, 3], 2), tf.tensor1d([1, 1, 0, 5], 'int32'), 3)];
    });
  });

  it('produces correct float oneHot values', async () => {
    await expectSameOnBackends(() => [tf.oneHot(tf.tensor1d([1, 0, 3], 'int32'), 4), tf.oneHot(tf.tensor1d([2], 'int32'), 3, 2, -1)]);
  });
});
