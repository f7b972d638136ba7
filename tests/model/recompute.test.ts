/**
 * Gradient checkpointing (ForwardOptions.checkpoint): the same loss and gradients as the plain
 * forward, with left padding and entropy too, and no tensor left behind after repeated steps.
 */
import { describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { expectClose } from '../engine/compare.js';

await initEngine({ backend: 'cpu', log: () => {} });

function lossAndGrads(model: LlamaModel, ids: tf.Tensor2D, checkpoint: boolean) {
  const vars = [...model.variables().values()];
  const { value, grads } = tf.variableGrads(() => {
    const { logp, entropy } = model.tokenLogProbs(ids, { leftPad: [0, 3], withEntropy: true, temperature: 0.8, checkpoint });
    return logp.mul(tf.tensor2d([[1], [-0.5]])).sum().add(entropy!.mean()).neg() as tf.Scalar;
  }, vars);
  const out = [value, ...vars.map((v) => grads[v.name])];
  return out.map((t) => {
    const h = { shape: [...t.shape], dtype: t.dtype, values: Array.from(t.dataSync()) };
    t.dispose();
    return h;
  });
}

describe('gradient checkpointing', () => {
  it('gives the same loss and gradients as the plain forward', () => {
    const config = presetConfig('tiny', { vocabSize: 32, bosId: null, eosId: 1, padId: 0 });
    const model = LlamaModel.create(config, 11);
    const ids = tf.tensor2d(Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 5 + 1) % 32), [2, 9], 'int32');
    const plain = lossAndGrads(model, ids, false);
    const before = tf.memory().numTensors;
    const checkpointed = lossAndGrads(model, ids, true);
    lossAndGrads(model, ids, true);
    expect(tf.memory().numTensors).toBe(before);
    expectClose(checkpointed, plain, 1e-4);
    model.dispose();
    ids.dispose();
  });
});
