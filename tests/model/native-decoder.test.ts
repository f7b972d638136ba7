import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { buildAllowedMask } from '../../src/model/allowed-mask.js';
import { nativeDecodeBlocker } from '../../src/model/decode-path.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadDecodeAddon, NativeDecodeSession } from '../../src/model/native-decoder.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { SampleOptions, SampleResult } from '../../src/model/types.js';

const V = 24;
// ragged, and rows 0/3 and 1/4 share their prompt (a GRPO group): prefilled once, cache copied
const PROMPTS = [[1, 5, 6, 7, 8], [1, 9], [1, 3, 4, 11, 12, 13, 14], [1, 5, 6, 7, 8], [1, 9]];
const addon = loadDecodeAddon().addon;

let model: LlamaModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  // grouped-query attention (2 kv heads for 4) and a separate lm_head, to cover both layouts
  const config = presetConfig('tiny', { vocabSize: V, bosId: 1, eosId: 2, padId: 0 }, {
    hidden_size: 32,
    intermediate_size: 48,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    initializer_range: 0.3,
    tie_word_embeddings: false,
  });
  model = LlamaModel.create(config, 7);
});

function opts(o: Partial<SampleOptions> = {}): SampleOptions {
  return { maxNewTokens: 10, temperature: 1, topK: 0, topP: 1, stopTokens: [], seed: 1, ...o };
}

/** The learner's recomputation: tokenLogProbs of each row's tokens on its own full sequence. */
async function rescore(prompts: number[][], r: SampleResult, temperature: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < prompts.length; i++) {
    const seq = [...prompts[i], ...r.tokens[i]];
    const sets = Array.from({ length: seq.length - 1 }, (_, t) => r.allowed?.[i][t - (prompts[i].length - 1)] ?? null);
    const allowed = buildAllowedMask(sets) ?? undefined;
    const logp = tf.tidy(() => model.tokenLogProbs(tf.tensor2d([seq], [1, seq.length], 'int32'), { temperature, allowed }).logp);
    out.push((await logp.array())[0].slice(prompts[i].length - 1));
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

/** Even ids while a row is short, then only the EOS-ish id 2 or 3: a grammar that constrains. */
const grammar: SampleOptions['allowedTokens'] = (generated) =>
  generated.map((g) => (g.length < 4 ? [4, 6, 8, 10, 12, 14, 16] : g.length < 6 ? null : [2, 3]));

describe.skipIf(addon === null)('native rollout decoder', () => {
  it('is the path sample() takes for a Llama model', () => {
    expect(nativeDecodeBlocker(model)).toBeNull();
    expect(nativeDecodeBlocker(model, 'reference')).toMatch(/reference/);
  });

  it('leaves decoding on the tfjs backend when that is a GPU one', async () => {
    // a cpu backend registered under the name 'webgl' stands in for a GPU backend
    const Cpu = tf.backend().constructor as new () => tf.KernelBackend;
    tf.registerBackend('webgl', () => new Cpu());
    try {
      await tf.setBackend('webgl');
      expect(nativeDecodeBlocker(model)).toMatch(/webgl backend/);
      expect(nativeDecodeBlocker(model, 'native')).toBeNull(); // an explicit choice still runs it
    } finally {
      await tf.setBackend('cpu');
      tf.removeBackend('webgl');
    }
    expect(nativeDecodeBlocker(model)).toBeNull();
  });

  it('runs Llama-3 variants (rope_scaling, biases) natively with the reference decoder’s greedy tokens', async () => {
    const scaled = LlamaModel.create({ ...model.config, attention_bias: true, mlp_bias: true, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } } as typeof model.config, 1);
    expect(nativeDecodeBlocker(scaled)).toBeNull();
    const o = opts({ temperature: 0 });
    const native = await sample(scaled, PROMPTS, { ...o, decoder: 'native' });
    const reference = await sample(scaled, PROMPTS, { ...o, decoder: 'reference' });
    expect(native.tokens).toEqual(reference.tokens);
    expect(maxDiff(native.logprobs, reference.logprobs)).toBeLessThan(1e-5);
    scaled.dispose();
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

  it('samples the reference decoder’s tokens for a seed (rows sharing a prompt still differ)', async () => {
    const o = opts({ temperature: 1.1, seed: 9, topK: 12, topP: 0.95 });
    const native = await sample(model, PROMPTS, { ...o, decoder: 'native' });
    expect(native.tokens).toEqual((await sample(model, PROMPTS, { ...o, decoder: 'reference' })).tokens);
    expect(native.tokens[0]).not.toEqual(native.tokens[3]);
  });

  it('returns log-probs the learner recomputes within 1e-4, with and without a grammar', async () => {
    for (const o of [
      opts({ temperature: 0.7, seed: 5 }),
      opts({ temperature: 1.3, seed: 6, stopTokens: [2, 3] }),
      opts({ temperature: 0.9, seed: 7, allowedTokens: grammar, stopTokens: [2] }),
    ]) {
      const r = await sample(model, PROMPTS, { ...o, decoder: 'native' });
      expect(r.tokens.some((t) => t.length > 1)).toBe(true);
      expect(maxDiff(r.logprobs, await rescore(PROMPTS, r, o.temperature))).toBeLessThan(1e-4);
    }
  });

  it('reloads its weight copy after setWeights and keeps tensors and answers stable across calls', async () => {
    const m = model.clone();
    const o = opts({ temperature: 0, decoder: 'native' });
    const before = await sample(m, PROMPTS, o);
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) expect(await sample(m, PROMPTS, o)).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensors);
    const other = LlamaModel.create(model.config, 99);
    m.setWeights(await other.toHostTensors());
    const after = await sample(m, PROMPTS, o);
    expect(after.tokens).toEqual((await sample(other, PROMPTS, { ...o, decoder: 'reference' })).tokens);
    expect(after.tokens).not.toEqual(before.tokens);
    m.dispose();
    other.dispose();
  });

  it('answers alike in a fresh cache and in one that reuses a freed cache’s memory', async () => {
    // a freed cache goes whole to the next cache it can hold (at most twice that one's size), its
    // rows of another length and its scratch sized for other calls: nothing it held may show
    const first = async (): Promise<Float32Array> => {
      const s = await NativeDecodeSession.start(model, PROMPTS.map((p) => [...p].reverse()), 40, 1);
      for (let t = 0; t < 6; t++) s.step(PROMPTS.map((_, i) => 3 + ((i + t) % 9)));
      s.dispose();
      return s.readLogProbs();
    };
    const second = async (): Promise<Float32Array> => {
      const s = await NativeDecodeSession.start(model, PROMPTS, 24, 1);
      s.step(PROMPTS.map(() => 4));
      const out = await s.readLogProbs();
      s.dispose();
      return out;
    };
    const alone = await second(); // its own fresh memory or a spare: compared below with both
    await first();
    const reused = await second();
    expect(reused).toEqual(alone);
    const other = await NativeDecodeSession.start(model, PROMPTS, 90, 1); // over the spare's capacity: fresh memory
    other.step(PROMPTS.map(() => 4));
    expect(Array.from(await other.readLogProbs())).toEqual(Array.from(reused));
    other.dispose();
  });

  it('rejects bad native calls with a RangeError instead of touching memory out of bounds', async () => {
    const session = await NativeDecodeSession.start(model, [[1, 2]], 3, 1);
    session.step([4]); // position 2: the cache's last
    expect(() => session.step([5])).toThrow(/maxLen/);
    session.dispose();
    expect(() => session.step([5])).toThrow(/freed/);
  });

  it('fails with a coded error when native decoding is forced past the position limit', async () => {
    const err = await sample(model, [[1, 2, 3]], opts({ maxNewTokens: 40, decoder: 'native' })).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_SEQUENCE_TOO_LONG')).toBe(true);
  });
});
