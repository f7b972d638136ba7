/**
 * Interoperability with Hugging Face checkpoints. The fixture (tests/fixtures/hf-tiny-llama) is a
 * tiny random Llama in HF format (F16 safetensors, GQA, untied, rope_theta 1000, a BPE
 * tokenizer) whose reference logits were computed by tools/fixtures/make_hf_tiny_llama.py, a
 * plain PyTorch forward written to match transformers' LlamaForCausalLM. Agreement here means our
 * loader, names and math match the HF model, not just our own reference.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { loadCheckpoint, saveCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { HfTokenizer } from '../../src/model/tokenizer.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/hf-tiny-llama');
interface Expected {
  tolerance: number;
  encode: { text: string; ids: number[] }[];
  logits: { ids: number[]; logits: number[][] }[];
}
const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as Expected;

/** Largest |ours - reference| over all cases. */
async function maxLogitError(model: LlamaModel): Promise<number> {
  let worst = 0;
  for (const { ids, logits: want } of expected.logits) {
    const logits = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32'))); // [1, T, V]
    const got = await logits.data();
    logits.dispose();
    const V = want[0].length;
    expect(got.length).toBe(ids.length * V);
    want.forEach((row, t) => row.forEach((w, v) => (worst = Math.max(worst, Math.abs(got[t * V + v] - w)))));
  }
  return worst;
}

let ckpt: Checkpoint;
let scratch: string;
beforeAll(async () => {
  ckpt = await loadCheckpoint(FIXTURE);
  scratch = await mkdtemp(join(tmpdir(), 'hf-interop-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('Hugging Face tiny Llama fixture', () => {
  it('loads config, F16 weights and the BPE tokenizer', () => {
    expect(ckpt.config).toMatchObject({ vocab_size: 64, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rope_theta: 1000 });
    expect(ckpt.config.torch_dtype).toBe('float32');
    expect(ckpt.weights.get('lm_head.weight')!.shape).toEqual([64, 32]);
    expect(ckpt.tokenizer).toBeInstanceOf(HfTokenizer);
    expect([ckpt.tokenizer.bosId, ckpt.tokenizer.eosId]).toEqual([1, 2]);
    for (const { text, ids } of expected.encode) expect(ckpt.tokenizer.encode(text)).toEqual(ids);
  });

  it('gives the reference logits of transformers-style PyTorch within tolerance, without leaking tensors', async () => {
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
    try {
      expect(await maxLogitError(model)).toBeLessThan(expected.tolerance);
      const before = tf.memory().numTensors;
      await maxLogitError(model);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });

  it('survives our save (float32) and load unchanged, and the saved model gives the same logits', async () => {
    const dir = join(scratch, 'resaved');
    await saveCheckpoint(dir, ckpt);
    const back = await loadCheckpoint(dir);
    expect(back.config).toEqual(ckpt.config);
    for (const [name, t] of ckpt.weights) expect(back.weights.get(name)!.data, name).toEqual(t.data);
    expect(back.tokenizer.toJSON()).toEqual(ckpt.tokenizer.toJSON());
    for (const { text, ids } of expected.encode) expect(back.tokenizer.encode(text)).toEqual(ids);

    const model = LlamaModel.fromHostTensors(back.config, back.weights, { trainable: false });
    try {
      expect(await maxLogitError(model)).toBeLessThan(expected.tolerance);
      // and what the model hands back is what it was given
      const host = await model.toHostTensors();
      for (const [name, t] of host) expect(t.data, name).toEqual(ckpt.weights.get(name)!.data);
    } finally {
      model.dispose();
    }
  });
});
