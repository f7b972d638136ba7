/** KernelProfiler: counts and times kernels while started, and puts the original kernels back. */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { KernelProfiler } from '../../src/engine/profiler.js';
import { tf } from '../../src/engine/tf.js';

describe('KernelProfiler', () => {
  it('records calls per kernel (and per shape) and restores the kernels it wrapped', async () => {
    await initEngine({ backend: 'wasm', log: () => {} });
    const original = tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc;
    const byKernel = new KernelProfiler();
    byKernel.start();
    tf.tidy(() => tf.matMul(tf.ones([3, 4]), tf.ones([4, 2])).add(1));
    tf.tidy(() => tf.matMul(tf.ones([3, 4]), tf.ones([4, 2])));
    const stats = byKernel.stop();
    expect(stats.find((s) => s.kernel === 'BatchMatMul')?.calls).toBe(2);
    expect(stats.find((s) => s.kernel === 'Add')?.calls).toBe(1);
    expect(stats.every((s) => s.ms >= 0)).toBe(true);
    expect(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc).toBe(original);

    const byShape = new KernelProfiler(true);
    byShape.start();
    tf.tidy(() => tf.matMul(tf.ones([3, 4]), tf.ones([4, 2])));
    expect(byShape.stop().map((s) => s.kernel)).toContain('BatchMatMul [3,4] [4,2]');
    const y = tf.tidy(() => tf.matMul(tf.ones([1, 2]), tf.ones([2, 1])));
    expect(Array.from(y.dataSync())).toEqual([2]);
    y.dispose();
  });
});
