/**
 * The native backend (tensors in their own typed arrays, hot kernels native): its buffer pool
 * recycles kernel outputs without ever overwriting data a caller holds, and a training step
 * keeps tensors, data ids and pooled bytes flat.
 */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { poolOf } from '../../src/engine/host-pool.js';
import { loadNativeAddon } from '../../src/engine/native-addon.js';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';

const load = loadNativeAddon();

describe.skipIf(load.addon === null)(`native backend${load.addon ? '' : ` (skipped: addon ${load.error})`}`, () => {
  it('recycles kernel outputs once disposed', async () => {
    await initEngine({ backend: 'native', log: () => {} });
    const pool = poolOf(tf.backend())!;
    expect(pool).toBeDefined();
    const a = tf.ones([64, 33]);
    const before = pool.reused;
    for (let i = 0; i < 5; i++) tf.tidy(() => a.mul(a).add(a));
    expect(pool.reused).toBeGreaterThan(before);
    a.dispose();
  });

  it('never recycles a buffer that was read: data a caller holds stays intact', async () => {
    await initEngine({ backend: 'native', log: () => {} });
    const a = tf.fill([128], 2);
    const t = a.mul(a);
    const held = t.dataSync(); // the backend's own array on the cpu storage
    t.dispose();
    for (let i = 0; i < 4; i++) tf.tidy(() => a.add(a).mul(a).sub(a)); // same-sized outputs
    expect(Array.from(held).every((v) => v === 4)).toBe(true);
    a.dispose();
  });

  it('keeps a view-sharing tensor intact when its source is disposed', async () => {
    await initEngine({ backend: 'native', log: () => {} });
    const x = tf.range(0, 16, 1, 'float32').mul(1); // a native kernel output: pooled buffer
    // the cpu kernel of StridedSlice stores a contiguous slice as a subarray of x's buffer
    const part = tf.stridedSlice(x, [4], [8], [1]);
    x.dispose();
    for (let i = 0; i < 4; i++) tf.tidy(() => tf.ones([16]).mul(3)); // would reuse x's buffer
    expect(Array.from(part.dataSync())).toEqual([4, 5, 6, 7]);
    part.dispose();
  });

  it('keeps tensors and data ids flat and pooled bytes bounded across training steps', async () => {
    await initEngine({ backend: 'native', log: () => {} });
    const config = presetConfig('tiny', { vocabSize: 32, bosId: null, eosId: 1, padId: 0 });
    const model = LlamaModel.create(config, 3);
    const vars = [...model.variables().values()];
    const ids = tf.tensor2d(Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 5) % 32), [2, 10], 'int32');
    const opt = tf.train.adam(1e-3);
    const step = () => opt.minimize(() => model.tokenLogProbs(ids).logp.mean().neg() as tf.Scalar, true, vars)?.dispose();
    step();
    step(); // the second step fills the pool to its working size
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const pool = poolOf(tf.backend())!;
    const [tensors, dataIds, pooled] = [tf.memory().numTensors, backend.numDataIds(), pool.bytes];
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(dataIds);
    expect(pool.bytes).toBeLessThanOrEqual(pooled * 1.25); // best fit may trade a buffer for a larger one
    opt.dispose();
    model.dispose();
    ids.dispose();
  });
});
