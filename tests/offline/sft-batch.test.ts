import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { sftBatch, sftLoss } from '../../src/offline/sft-batch.js';
import { tinyLlamaConfig } from '../helpers.js';

beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} });
});

const task = createTask('arithmetic', { seed: 2 });
const tok = tokenizerForTask(task);

describe('sftBatch', () => {
  it('lays out [BOS] prompt completion [EOS] right-padded, masking completion targets only', () => {
    const b = sftBatch(task, tok, 'train', 10, 3);
    expect(b.batchSize).toBe(3);
    let completion = 0;
    for (let r = 0; r < 3; r++) {
      const ex = task.example('train', 10 + r);
      const row = Array.from(b.ids.subarray(r * b.length, (r + 1) * b.length));
      const expected = [tok.bosId!, ...tok.encode(ex.prompt), ...tok.encode(ex.target!), tok.eosId];
      expect(row.slice(0, expected.length)).toEqual(expected);
      expect(row.slice(expected.length).every((t) => t === tok.padId)).toBe(true);
      const mask = Array.from(b.mask.subarray(r * (b.length - 1), (r + 1) * (b.length - 1)));
      const first = 1 + ex.prompt.length - 1; // position of "=" predicts the first completion token
      const n = ex.target!.length + 1; // completion + EOS
      expect(mask).toEqual(mask.map((_, t) => (t >= first && t < first + n ? 1 : 0)));
      completion += n;
    }
    expect(b.completionTokens).toBe(completion);
    expect(b.length).toBe(Math.max(...[0, 1, 2].map((r) => task.example('train', 10 + r)).map((e) => e.prompt.length + e.target!.length + 2)));
  });

  it('needs a target for every example', () => {
    const noTarget = { ...task, example: () => ({ prompt: '1+1=', meta: { answer: '2' } }) };
    expect(() => sftBatch(noTarget, tok, 'train', 0, 1)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_SFT_NO_TARGET' }));
  });
});

describe('sftLoss', () => {
  it('is the mean NLL over completion tokens, and leaks no tensors', async () => {
    const config = tinyLlamaConfig(tok, { initializer_range: 0.2 });
    const model = LlamaModel.create(config, 3);
    const b = sftBatch(task, tok, 'train', 0, 4);
    const ids = tf.tensor2d(b.ids, [b.batchSize, b.length], 'int32');
    const mask = tf.tensor2d(b.mask, [b.batchSize, b.length - 1]);
    const loss = sftLoss(model, ids, mask);
    const logp = tf.tidy(() => model.tokenLogProbs(ids).logp);
    const lp = await logp.data();
    let sum = 0;
    b.mask.forEach((m, i) => (sum -= m * lp[i]));
    expect((await loss.data())[0]).toBeCloseTo(sum / b.completionTokens, 4);
    tf.dispose([loss, logp]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) sftLoss(model, ids, mask).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ids, mask]);
    model.dispose();
  });
});
