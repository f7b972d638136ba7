import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { LOSS_METRIC_NAMES, decodeLossMetrics, readLossMetrics } from '../../src/grpo/index.js';
import { expectCode } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('loss metrics', () => {
  it('decodes the packed slots by name', () => {
    const values = LOSS_METRIC_NAMES.map((_, i) => i + 0.5);
    const m = decodeLossMetrics(values);
    expect(Object.keys(m)).toEqual([...LOSS_METRIC_NAMES]);
    expect(m.loss).toBe(0.5);
    expect(m.numTokens).toBe(LOSS_METRIC_NAMES.length - 0.5);
    expectCode(() => decodeLossMetrics([1, 2]), 'GRPO_ERR_BAD_SHAPE', /got 2 values/);
  });

  it('readLossMetrics reads once and disposes the metrics and the loss, even on a bad shape', async () => {
    const before = tf.memory().numTensors;
    const metrics = tf.tensor1d(LOSS_METRIC_NAMES.map((_, i) => i));
    const loss = tf.scalar(0);
    const m = await readLossMetrics({ loss, metrics });
    expect(m.kl).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    const bad = tf.tensor1d([1, 2, 3]);
    await expect(readLossMetrics(bad)).rejects.toMatchObject({ code: 'GRPO_ERR_BAD_SHAPE' });
    expect(bad.isDisposed).toBe(true);
  });
});
