/**
 * The native rollout decoder on every supported family (the tiny Hugging Face fixtures of
 * tests/fixtures/hf-tiny-*, see hf-families.test.ts): Llama-3 with rope_scaling, head_dim and
 * attention/MLP biases; Qwen2's q/k/v biases; Qwen3's per-head q/k norms and head_dim; Gemma2's
 * embedding scale, GeGLU, sandwich norms with 1 + w, soft-capping, sliding windows and
 * query_pre_attn_scalar. Against the reference tfjs decoder (greedy tokens and log-probs) and the
 * learner's recomputation (sampled log-probs), with and without a grammar, and without tensor growth.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { buildAllowedMask } from '../../src/model/allowed-mask.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { nativeDecodeBlocker } from '../../src/model/decode-path.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadDecodeAddon } from '../../src/model/native-decoder.js';
import { sample } from '../../src/model/sampling.js';
import { StreamSampler } from '../../src/model/stream-sampler.js';
import type { SampleOptions, SampleResult } from '../../src/model/types.js';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const FAMILIES = ['llama3', 'qwen2', 'qwen3', 'gemma2'] as const;
const addon = loadDecodeAddon().addon;

// ragged, longer than Gemma2's window of 4, and rows 0/3 share their prompt (a GRPO group)
const PROMPTS = [
  [1, 5, 6, 7, 8, 40, 41, 9],
  [1, 9],
  [1, 3, 4, 11, 12, 13, 14, 50, 51, 52, 20],
  [1, 5, 6, 7, 8, 40, 41, 9],
];

function opts(o: Partial<SampleOptions> = {}): SampleOptions {
  return { maxNewTokens: 9, temperature: 1, topK: 0, topP: 1, stopTokens: [], seed: 1, ...o };
}

/** Even ids while a row is short, then any, then only 2 or 3: a grammar that constrains. */
const grammar: SampleOptions['allowedTokens'] = (generated) =>
  generated.map((g) => (g.length < 3 ? [4, 6, 8, 10, 12, 14, 16, 30, 62] : g.length < 6 ? null : [2, 3]));

/** The learner's recomputation: tokenLogProbs of each row's tokens on its own full sequence. */
async function rescore(model: LlamaModel, r: SampleResult, temperature: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < PROMPTS.length; i++) {
    const seq = [...PROMPTS[i], ...r.tokens[i]];
    const sets = Array.from({ length: seq.length - 1 }, (_, t) => r.allowed?.[i][t - (PROMPTS[i].length - 1)] ?? null);
    const allowed = buildAllowedMask(sets) ?? undefined;
    const logp = tf.tidy(() => model.tokenLogProbs(tf.tensor2d([seq], [1, seq.length], 'int32'), { temperature, allowed }).logp);
    out.push((await logp.array())[0].slice(PROMPTS[i].length - 1));
    logp.dispose();
  }
  return out;
}

function maxDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => {
    expect(row.length).toBe(b[i].length);
    row.forEach((x, t) => (m = Math.max(m, Math.abs(x - b[i][t]))));
  });
  return m;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe.skipIf(addon === null).each(FAMILIES)('native decoder on the tiny %s fixture', (family) => {
  let model: LlamaModel;
  beforeAll(async () => {
    const ckpt = await loadCheckpoint(join(FIXTURES, `hf-tiny-${family}`));
    model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
  });
  afterAll(() => model.dispose());

  it('is the path sample() takes', () => {
    expect(nativeDecodeBlocker(model)).toBeNull();
  });

  it('gives the reference decoder’s greedy tokens and log-probs, grammar or not', async () => {
    for (const o of [opts({ temperature: 0 }), opts({ temperature: 0, allowedTokens: grammar, stopTokens: [2] })]) {
      const native = await sample(model, PROMPTS, { ...o, decoder: 'native' });
      const reference = await sample(model, PROMPTS, { ...o, decoder: 'reference' });
      expect(native.tokens).toEqual(reference.tokens);
      expect(native.finishReason).toEqual(reference.finishReason);
      expect(native.allowed).toEqual(reference.allowed);
      expect(maxDiff(native.logprobs, reference.logprobs)).toBeLessThan(1e-5);
    }
  });

  it('returns sampled log-probs the learner recomputes within 1e-4, with and without a grammar', async () => {
    for (const o of [opts({ temperature: 0.7, seed: 5 }), opts({ temperature: 1.2, seed: 7, allowedTokens: grammar, stopTokens: [2] })]) {
      const r = await sample(model, PROMPTS, { ...o, decoder: 'native' });
      expect(r.tokens.every((t) => t.length > 1)).toBe(true);
      expect(maxDiff(r.logprobs, await rescore(model, r, o.temperature))).toBeLessThan(1e-4);
      // the same draws as the reference decoder for the seed
      expect(r.tokens).toEqual((await sample(model, PROMPTS, { ...o, decoder: 'reference' })).tokens);
    }
  });

  it('streams a group through continuous batching as sample() gives it', async () => {
    const o = opts({ temperature: 0.9 });
    const stream = await StreamSampler.start<number>(model, 6, 24, o);
    try {
      stream.admit({ key: 0, prompt: PROMPTS[2], n: 3, seed: 11 });
      const done: SampleResult[] = [];
      while (done.length === 0) for (const { result } of stream.tick()) done.push(result);
      expect(done[0]).toEqual(await sample(model, [PROMPTS[2], PROMPTS[2], PROMPTS[2]], { ...o, seed: 11, decoder: 'native' }));
    } finally {
      stream.dispose();
    }
  });

  it('leaves tf tensors and answers unchanged over repeated calls', async () => {
    const o = opts({ temperature: 0.8, seed: 3, decoder: 'native' });
    const first = await sample(model, PROMPTS, o);
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) expect(await sample(model, PROMPTS, o)).toEqual(first);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});
