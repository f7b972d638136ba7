import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scoreCommand } from '../../src/commands/score.js';
import { tf } from '../../src/engine/tf.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { writeTinyCheckpoint } from './fixture.js';
import { captureIO } from './helpers.js';

let root: string;
let ckpt: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-score-'));
  ckpt = join(root, 'ckpt');
  await writeTinyCheckpoint(ckpt, { seed: 1, task_options: {} });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo score (in-process)', () => {
  it('prints token ids and per-token log-probs that match LlamaModel.tokenLogProbs', async () => {
    const cap = captureIO();
    await scoreCommand({ checkpoint: ckpt, prompt: '(4-2)/-6=', completion: '-1/3' }, cap.io);
    const r = JSON.parse(cap.out[0]);
    const { tokenizer, config, weights } = await loadCheckpoint(ckpt);
    expect(r.promptIds).toEqual([tokenizer.bosId, ...tokenizer.encode('(4-2)/-6=')]);
    expect(r.completionIds).toEqual(tokenizer.encode('-1/3'));
    expect(r.logprobs).toHaveLength(4);

    const model = LlamaModel.fromHostTensors(config, weights);
    const ids = [...r.promptIds, ...r.completionIds];
    const logp = tf.tidy(() => model.tokenLogProbs(tf.tensor2d(ids, [1, ids.length], 'int32')).logp);
    const all = Array.from(await logp.data()); // all[t] = log p(ids[t + 1] | ids[..t])
    logp.dispose();
    model.dispose();
    const expected = all.slice(r.promptIds.length - 1);
    r.logprobs.forEach((x: number, i: number) => expect(x).toBeCloseTo(expected[i], 5));
    expect(r.total).toBeCloseTo(expected.reduce((a, b) => a + b, 0), 5);
    expect(r.logprobs.every((x: number) => x < 0)).toBe(true);
  });

  it('--eos scores the EOS token too; an empty completion scores nothing', async () => {
    const cap = captureIO();
    const plain = await scoreCommand({ checkpoint: ckpt, prompt: '1+2=', completion: '3' }, cap.io);
    const withEos = await scoreCommand({ checkpoint: ckpt, prompt: '1+2=', completion: '3', eos: true }, cap.io);
    expect(withEos.completionIds).toEqual([...plain.completionIds, 2]);
    expect(withEos.logprobs[0]).toBeCloseTo(plain.logprobs[0], 5);
    expect(withEos.logprobs).toHaveLength(2);
    const empty = await scoreCommand({ checkpoint: ckpt, prompt: '1+2=', completion: '' }, cap.io);
    expect(empty).toMatchObject({ completionIds: [], logprobs: [], total: 0 });
  });

  it('fails with coded errors on text outside the alphabet or the window', async () => {
    await expect(scoreCommand({ checkpoint: ckpt, prompt: '1+2=', completion: 'x' }, captureIO().io)).rejects.toMatchObject({
      code: 'GRPO_ERR_TOKENIZER_UNKNOWN_CHAR',
    });
    await expect(scoreCommand({ checkpoint: ckpt, prompt: '1'.repeat(300), completion: '1' }, captureIO().io)).rejects.toMatchObject({
      code: 'GRPO_ERR_SCORE_INPUT',
    });
  });
});
