import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { Rng } from '../../src/shared/rng.js';
import { LlamaModel } from '../../src/model/llama.js';
import { buildAllowedMask } from '../../src/model/allowed-mask.js';
import { chooseToken, sample } from '../../src/model/sampling.js';
import type { SampleOptions, SampleResult } from '../../src/model/types.js';
import { expectCode, tinyLlamaConfig } from '../helpers.js';

const V = 20;
const PROMPTS = [[1, 5, 6, 7, 8], [1, 9], [1, 3, 4]]; // ragged: left padding in the prefill

let model: LlamaModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  const config = tinyLlamaConfig({ vocabSize: V, bosId: 1, eosId: 2, padId: 0 }, { max_position_embeddings: 32, initializer_range: 0.3 }, 'gqa');
  model = LlamaModel.create(config, 21);
});

function opts(o: Partial<SampleOptions> = {}): SampleOptions {
  return { maxNewTokens: 8, temperature: 1, topK: 0, topP: 1, stopTokens: [], seed: 1, ...o };
}

/** tokenLogProbs of each row's generated tokens, recomputed on its own full sequence. */
async function rescore(prompts: number[][], r: SampleResult, temperature: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < prompts.length; i++) {
    const seq = [...prompts[i], ...r.tokens[i]];
    // under a grammar: renormalised over the sets the sampler reports, at the completion positions
    const sets = Array.from({ length: seq.length - 1 }, (_, t) => r.allowed?.[i][t - (prompts[i].length - 1)] ?? null);
    const allowed = buildAllowedMask(sets) ?? undefined;
    const logp = tf.tidy(() => model.tokenLogProbs(tf.tensor2d([seq], [1, seq.length], 'int32'), { temperature, allowed }).logp);
    out.push((await logp.array())[0].slice(prompts[i].length - 1));
    logp.dispose();
  }
  return out;
}

describe('sample with a KV cache', () => {
  it('returns the log-probs tokenLogProbs gives on the full sequence (greedy and sampled)', async () => {
    for (const o of [opts({ temperature: 0 }), opts({ temperature: 0.7, seed: 5 }), opts({ temperature: 1.3, topK: 5, topP: 0.9 })]) {
      const r = await sample(model, PROMPTS, o);
      const ref = await rescore(PROMPTS, r, o.temperature);
      for (let i = 0; i < PROMPTS.length; i++) {
        expect(r.tokens[i].length).toBe(8);
        expect(r.finishReason[i]).toBe('length');
        for (let t = 0; t < 8; t++) expect(Math.abs(r.logprobs[i][t] - ref[i][t])).toBeLessThan(1e-4);
      }
    }
  });

  it('greedy picks the argmax of the full-sequence logits at every step', async () => {
    const r = await sample(model, PROMPTS, opts({ temperature: 0, maxNewTokens: 6 }));
    for (let i = 0; i < PROMPTS.length; i++) {
      const seq = [...PROMPTS[i], ...r.tokens[i]];
      const logits = tf.tidy(() => model.logits(tf.tensor2d([seq], [1, seq.length], 'int32')));
      const rows = (await logits.array())[0];
      logits.dispose();
      for (let t = 0; t < 6; t++) {
        const z = rows[PROMPTS[i].length - 1 + t];
        expect(r.tokens[i][t]).toBe(z.indexOf(Math.max(...z)));
      }
    }
  });

  it('is reproducible for a seed and differs across seeds; top-k 1 equals greedy', async () => {
    const a = await sample(model, PROMPTS, opts({ seed: 7 }));
    const b = await sample(model, PROMPTS, opts({ seed: 7 }));
    const c = await sample(model, PROMPTS, opts({ seed: 8 }));
    expect(b).toEqual(a);
    expect(c.tokens).not.toEqual(a.tokens);
    const greedy = await sample(model, PROMPTS, opts({ temperature: 0 }));
    const top1 = await sample(model, PROMPTS, opts({ topK: 1, seed: 99 }));
    expect(top1.tokens).toEqual(greedy.tokens);
    const nucleus = await sample(model, PROMPTS, opts({ topP: 1e-6, seed: 98 }));
    expect(nucleus.tokens).toEqual(greedy.tokens);
  });

  it('stops a row after a stop token and finishes early when every row stopped', async () => {
    const free = await sample(model, PROMPTS, opts({ seed: 3, maxNewTokens: 12 }));
    const stopTok = free.tokens[0][2];
    const r = await sample(model, PROMPTS, opts({ seed: 3, maxNewTokens: 12, stopTokens: [stopTok] }));
    for (let i = 0; i < PROMPTS.length; i++) {
      const cut = free.tokens[i].indexOf(stopTok);
      if (cut < 0) {
        expect(r.tokens[i]).toEqual(free.tokens[i]);
        expect(r.finishReason[i]).toBe('length');
      } else {
        expect(r.tokens[i]).toEqual(free.tokens[i].slice(0, cut + 1)); // stop token included
        expect(r.finishReason[i]).toBe('stop');
      }
    }
    expect(r.tokens[0].length).toBeLessThanOrEqual(3);

    const allStop = await sample(model, PROMPTS, opts({ maxNewTokens: 12, stopTokens: Array.from({ length: V }, (_, t) => t) }));
    expect(allStop.tokens.map((t) => t.length)).toEqual([1, 1, 1]);
    expect(allStop.finishReason).toEqual(['stop', 'stop', 'stop']);
  });

  it('respects allowedTokens on every step and ends rows with an empty set as grammar', async () => {
    const seen: { generated: number[][]; rows: number[] }[] = [];
    const r = await sample(
      model,
      PROMPTS,
      opts({
        maxNewTokens: 6,
        seed: 4,
        allowedTokens: (generated, rows) => {
          seen.push({ generated, rows });
          // row 0: even tokens; row 1: only 7 or 11; row 2: anything for 3 tokens, then nothing
          return rows.map((row, i) =>
            row === 0 ? [0, 2, 4, 6, 8, 10, 12, 14, 16, 18] : row === 1 ? new Int32Array([11, 7]) : generated[i].length < 3 ? null : [],
          );
        },
      }),
    );
    expect(r.tokens[0].every((t) => t % 2 === 0)).toBe(true);
    expect(r.tokens[1].every((t) => t === 7 || t === 11)).toBe(true);
    expect(r.tokens[2].length).toBe(3);
    expect(r.finishReason).toEqual(['length', 'length', 'grammar']);
    expect(seen[0]).toEqual({ generated: [[], [], []], rows: [0, 1, 2] });
    expect(seen[4].rows).toEqual([0, 1]); // row 2 left the batch after its empty set
    expect(seen[4].generated[1]).toEqual(r.tokens[1].slice(0, 4));
    // the returned log-probs are renormalised over each step's allowed set, which comes back with
    // them (ascending; null where every token was allowed); a set of one gives log-prob 0
    expect(r.allowed![0].every((set) => JSON.stringify(set) === JSON.stringify([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]))).toBe(true);
    expect(r.allowed![1].every((set) => JSON.stringify(set) === '[7,11]')).toBe(true);
    expect(r.allowed![2]).toEqual([null, null, null]);
    const ref = await rescore(PROMPTS, r, 1);
    for (let i = 0; i < 3; i++) {
      r.logprobs[i].forEach((lp, t) => expect(Math.abs(lp - ref[i][t])).toBeLessThan(1e-4));
    }
  });

  it('samples from the weights it started with when setWeights lands mid-sequence', async () => {
    const m = model.clone();
    const donor = LlamaModel.create(model.config, 22);
    const other = await donor.toHostTensors();
    donor.dispose();
    const o = opts({ temperature: 0, maxNewTokens: 6 });
    const pending = sample(m, PROMPTS, o); // runs the prefill, then awaits its first host read
    m.setWeights(other);
    expect(await pending).toEqual(await sample(model, PROMPTS, o));
    expect((await sample(m, PROMPTS, o)).tokens).not.toEqual((await pending).tokens);
    m.dispose();
  });

  it('keeps tf.memory().numTensors constant across sample calls after warm-up', async () => {
    const o = opts({ maxNewTokens: 10, stopTokens: [2, 3], topK: 8 });
    await sample(model, PROMPTS, o);
    const before = tf.memory().numTensors;
    for (let seed = 0; seed < 4; seed++) await sample(model, PROMPTS, { ...o, seed });
    await sample(model, PROMPTS, { ...o, allowedTokens: (_g, rows) => rows.map(() => []) });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('handles zero new tokens and rejects bad options with coded errors', async () => {
    expect(await sample(model, PROMPTS, opts({ maxNewTokens: 0 }))).toEqual({
      tokens: [[], [], []],
      logprobs: [[], [], []],
      finishReason: ['length', 'length', 'length'],
    });
    expect(await sample(model, [], opts())).toEqual({ tokens: [], logprobs: [], finishReason: [] });
    await expectCode(sample(model, [[1, 2], []], opts()), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, [[1, V]], opts()), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, PROMPTS, opts({ temperature: -1 })), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, PROMPTS, opts({ topP: 0 })), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, PROMPTS, opts({ topK: 1.5 })), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, PROMPTS, opts({ allowedTokens: () => [[V], null, null] })), 'GRPO_ERR_SAMPLE_OPTIONS');
    await expectCode(sample(model, PROMPTS, opts({ maxNewTokens: 28 })), 'GRPO_ERR_SEQUENCE_TOO_LONG');
  });
});

describe('chooseToken', () => {
  const probs = [0.05, 0.4, 0.3, 0.15, 0.1];
  const logp = Float32Array.from(probs, Math.log);

  function frequencies(o: Partial<SampleOptions>, allowed: number[] | null = null, n = 4000): number[] {
    const rng = new Rng(123);
    const counts = new Array(probs.length).fill(0);
    for (let i = 0; i < n; i++) counts[chooseToken(logp, allowed, { temperature: 1, topK: 0, topP: 1, ...o }, rng)]++;
    return counts.map((c) => c / n);
  }

  it('draws in proportion to the probabilities', () => {
    frequencies({}).forEach((f, i) => expect(Math.abs(f - probs[i])).toBeLessThan(0.03));
  });

  it('truncates to the top k and to the top-p nucleus, renormalised', () => {
    const k2 = frequencies({ topK: 2 });
    expect(k2[0] + k2[3] + k2[4]).toBe(0);
    expect(Math.abs(k2[1] - 0.4 / 0.7)).toBeLessThan(0.03);
    const p = frequencies({ topP: 0.75 }); // 0.4 + 0.3 < 0.75 <= 0.4 + 0.3 + 0.15
    expect(p[0] + p[4]).toBe(0);
    expect(Math.abs(p[3] - 0.15 / 0.85)).toBeLessThan(0.03);
  });

  it('samples only allowed tokens and takes the allowed argmax when greedy', () => {
    const f = frequencies({}, [0, 3, 3]);
    expect(f[1] + f[2] + f[4]).toBe(0);
    expect(Math.abs(f[3] - 0.15 / 0.2)).toBeLessThan(0.03);
    expect(chooseToken(logp, [4, 0, 3], { temperature: 0, topK: 0, topP: 1 }, new Rng(1))).toBe(3);
  });
});
