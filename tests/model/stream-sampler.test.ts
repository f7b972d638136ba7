import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadDecodeAddon } from '../../src/model/native-decoder.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import { StreamSampler, type StreamJob } from '../../src/model/stream-sampler.js';
import type { SampleOptions, SampleResult } from '../../src/model/types.js';

const V = 24;
let model: LlamaModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  const config = presetConfig('tiny', { vocabSize: V, bosId: 1, eosId: 2, padId: 0 }, {
    hidden_size: 32,
    intermediate_size: 48,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    initializer_range: 0.3,
  });
  model = LlamaModel.create(config, 11);
});

const grammar: SampleOptions['allowedTokens'] = (generated) => generated.map((g) => (g.length % 2 === 0 ? [2, 4, 6, 8, 10] : null));

/** Jobs of different sizes and prompts; stop token 2 ends rows at different steps. */
function jobs(withGrammar: boolean): StreamJob<number>[] {
  const prompts = [[1, 5, 6], [1, 9], [1, 3, 4, 11, 12], [1, 7, 7], [1, 13], [1, 5, 6], [1, 14, 15, 16]];
  return prompts.map((prompt, key) => ({ key, prompt, n: 1 + (key % 3), seed: 100 + key, ...(withGrammar ? { allowedTokens: grammar } : {}) }));
}

/** Streams every job through `rows` cache rows, admitting in order as rows free up. */
async function stream(all: StreamJob<number>[], rows: number, opts: Omit<SampleOptions, 'seed'>): Promise<Map<number, SampleResult>> {
  const s = await StreamSampler.start<number>(model, rows, 6 + opts.maxNewTokens, opts);
  const queue = [...all];
  const out = new Map<number, SampleResult>();
  let ticks = 0;
  while (queue.length > 0 || s.liveJobs > 0) {
    while (queue.length > 0 && s.freeRows >= queue[0].n) s.admit(queue.shift()!);
    for (const { key, result } of s.tick()) {
      expect(out.has(key)).toBe(false); // each job comes back exactly once
      out.set(key, result);
    }
    expect(++ticks).toBeLessThan(200);
  }
  expect(s.freeRows).toBe(rows);
  s.dispose();
  return out;
}

describe.skipIf(loadDecodeAddon().addon === null)('StreamSampler (continuous batching)', () => {
  for (const withGrammar of [false, true]) {
    it(`gives each job what sample() gives it alone, whatever it shares rows with${withGrammar ? ' (grammar)' : ''}`, async () => {
      for (const o of [
        { maxNewTokens: 8, temperature: 0, topK: 0, topP: 1, stopTokens: [2] },
        { maxNewTokens: 8, temperature: 1.2, topK: 0, topP: 0.9, stopTokens: [2] },
      ]) {
        const all = jobs(withGrammar);
        const streamed = await stream(all, 4, o);
        expect([...streamed.keys()].sort((a, b) => a - b)).toEqual(all.map((j) => j.key));
        for (const j of all) {
          const alone = await sample(model, Array.from({ length: j.n }, () => j.prompt), {
            ...o,
            seed: j.seed,
            allowedTokens: j.allowedTokens,
            decoder: 'reference',
          });
          const got = streamed.get(j.key)!;
          expect(got.tokens).toEqual(alone.tokens);
          expect(got.finishReason).toEqual(alone.finishReason);
          expect(got.allowed).toEqual(alone.allowed);
          got.logprobs.forEach((row, i) => row.forEach((lp, t) => expect(Math.abs(lp - alone.logprobs[i][t])).toBeLessThan(1e-5)));
        }
      }
    });
  }

  it('gives the same results with 3 rows as with room for everything, creating no tensors', async () => {
    const o = { maxNewTokens: 6, temperature: 1, topK: 0, topP: 1, stopTokens: [2] };
    const narrow = await stream(jobs(false), 3, o);
    const tensors = tf.memory().numTensors;
    const wide = await stream(jobs(false), 32, o);
    for (const [k, r] of wide) expect(narrow.get(k)!.tokens).toEqual(r.tokens);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('refuses a job that can never fit', async () => {
    const s = await StreamSampler.start<number>(model, 2, 8, { maxNewTokens: 4, temperature: 1, topK: 0, topP: 1, stopTokens: [] });
    expect(s.fits({ key: 0, prompt: [1, 2], n: 3, seed: 1 })).toBe(false);
    expect(s.fits({ key: 0, prompt: [1, 2, 3, 4, 5], n: 1, seed: 1 })).toBe(false);
    expect(() => s.admit({ key: 0, prompt: [1, 2], n: 3, seed: 1 })).toThrow(/does not fit/);
    s.dispose();
  });
});
