import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { buildAllowedMask } from '../../src/model/allowed-mask.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';

let model: LlamaModel;
const V = 12;
const IDS = [
  [1, 5, 6, 7, 3],
  [1, 9, 4, 4, 2],
];

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = LlamaModel.create(
    presetConfig('tiny', { vocabSize: V, bosId: 1, eosId: 2, padId: 0 }, { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 16 }),
    7,
  );
});

describe('buildAllowedMask', () => {
  it('pads sets to the widest and flags the constrained positions', () => {
    expect(buildAllowedMask([null, undefined])).toBeNull();
    const m = buildAllowedMask([[3, 5], null, [7]])!;
    expect(m.width).toBe(2);
    expect(Array.from(m.ids)).toEqual([3, 5, 0, 0, 7, 0]);
    expect(Array.from(m.valid)).toEqual([1, 1, 0, 0, 1, 0]);
    expect(Array.from(m.constrained)).toEqual([1, 0, 1]);
  });
});

describe('tokenLogProbs with allowed sets', () => {
  // positions n = b * 4 + t predict IDS[b][t + 1]; every set holds its target
  const sets = [[5, 8], null, [2, 7, 9], [3], [4, 9], [0, 4], null, null];

  it('renormalises constrained positions over their sets, entropy included, and leaves the rest alone', async () => {
    const ids = tf.tensor2d(IDS, [2, 5], 'int32');
    const raw = tf.tidy(() => {
      const z = model.logits(ids).slice([0, 0, 0], [2, 4, V]).reshape([8, V]);
      return tf.logSoftmax(z.div(0.8));
    });
    const { logp, entropy } = model.tokenLogProbs(ids, { temperature: 0.8, withEntropy: true, allowed: buildAllowedMask(sets)! });
    const [lsm, lp, h] = [await raw.array(), (await logp.array()).flat(), (await entropy!.array()).flat()];
    for (let n = 0; n < 8; n++) {
      const target = IDS[Math.floor(n / 4)][(n % 4) + 1];
      const set = sets[n] ?? Array.from({ length: V }, (_, t) => t);
      const logZ = Math.log(set.reduce((a, t) => a + Math.exp(lsm[n][t]), 0));
      expect(lp[n]).toBeCloseTo(lsm[n][target] - logZ, 5);
      const q = set.map((t) => Math.exp(lsm[n][t] - logZ));
      expect(h[n]).toBeCloseTo(-q.reduce((a, p) => a + p * Math.log(p), 0), 5);
    }
    expect(lp[3]).toBeCloseTo(0, 6); // one allowed token: probability 1
    expect(h[3]).toBeCloseTo(0, 6);
    tf.dispose([ids, raw, logp, entropy!]);
  });

  it('has a finite gradient and leaks no tensor', () => {
    const ids = tf.tensor2d(IDS, [2, 5], 'int32');
    const mask = buildAllowedMask(sets)!;
    const run = () => {
      const { value, grads } = tf.variableGrads(() => model.tokenLogProbs(ids, { allowed: mask }).logp.sum() as tf.Scalar);
      const finite = Object.values(grads).every((g) => tf.tidy(() => g.isFinite().all().dataSync()[0] === 1));
      tf.dispose([value, ...Object.values(grads)]);
      return finite;
    };
    expect(run()).toBe(true);
    const before = tf.memory().numTensors;
    run();
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
  });

  it('rejects a mask that does not fit the batch or names no token', () => {
    const ids = tf.tensor2d(IDS, [2, 5], 'int32');
    expect(() => model.tokenLogProbs(ids, { allowed: buildAllowedMask([[1]])! })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_MODEL_INPUT' }));
    const bad = buildAllowedMask([[V], null, null, null, null, null, null, null])!;
    expect(() => model.tokenLogProbs(ids, { allowed: bad })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_MODEL_INPUT' }));
    ids.dispose();
  });
});
