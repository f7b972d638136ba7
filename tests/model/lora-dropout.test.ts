/**
 * LoRA's side path and lora_dropout (src/model/lora-side.ts): the side path gives the merged
 * model's logits; a seeded mask is the hand-computed one and the mean over masks is the merged
 * output; training with dropout moves only A and B, is deterministic, and gradient checkpointing
 * recomputes each layer with the mask its forward drew.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { LlamaModel } from '../../src/model/llama.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { LoraAdapters, type LoraSpec } from '../../src/model/lora.js';
import { dropoutMask, mixSeed, sideTerm, type LoraLayer } from '../../src/model/lora-side.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { parseConfig } from '../../src/shared/config.js';
import type { GroupRollout } from '../../src/shared/protocol.js';

const TOKENS = { vocabSize: 20, bosId: 1, eosId: 2, padId: 0 };
const SPEC: LoraSpec = { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear' };
const IDS = [
  [1, 5, 6, 7, 8, 9],
  [1, 3, 4, 10, 11, 12],
];

let config: LlamaConfig;
let base: NamedHostTensors;
let groups: GroupRollout[];

/** Adapters with B filled too (a trained-looking adapter, so the side path matters). */
async function trainedAdapters(spec: LoraSpec, seed: number): Promise<LoraAdapters> {
  const a = LoraAdapters.create(llamaParamShapes(config), spec, seed);
  const host = await a.toHostTensors();
  for (const [name, t] of host) if (name.includes('lora_B')) t.data.forEach((_, i) => (t.data[i] = Math.sin(i + seed) * 0.1));
  a.setHostTensors(host);
  return a;
}

function logProbs(model: LlamaModel, opts: { dropoutSeed?: number } = {}): Float32Array {
  return tf.tidy(() => model.tokenLogProbs(tf.tensor2d(IDS, undefined, 'int32'), opts).logp.dataSync() as Float32Array);
}

/** The adapters after two GRPO steps on `groups` from the same start, with these settings. */
async function trainAdapters(settings: Record<string, unknown>, checkBase = false): Promise<NamedHostTensors> {
  const spec = { ...SPEC, dropout: (settings.lora_dropout as number | undefined) ?? 0 };
  const model = LlamaModel.fromHostTensors(config, base, { trainable: false });
  const a = await trainedAdapters(spec, 1);
  model.setAdapters(a);
  const cfg = parseConfig({ group_size: 4, max_gen_len: 5, lr: 1e-2, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false, lora_r: 4, lora_alpha: 8, ...settings });
  const trainer = new GrpoTrainer({ config: cfg, policy: model });
  for (let s = 0; s < 2; s++) expect((await trainer.step(groups, s)).updated).toBe(true);
  if (checkBase) {
    const after = await model.toHostTensors();
    for (const [name, t] of base) expect(after.get(name)!.data, name).toEqual(t.data);
  }
  const out = await a.toHostTensors();
  trainer.dispose();
  model.dispose();
  a.dispose();
  return out;
}

function maxDiff(x: NamedHostTensors, y: NamedHostTensors): number {
  let m = 0;
  for (const [name, t] of x) {
    const o = y.get(name)!.data;
    for (let i = 0; i < t.data.length; i++) m = Math.max(m, Math.abs(t.data[i]! - o[i]!));
  }
  return m;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  config = presetConfig('tiny', TOKENS, {
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    tie_word_embeddings: false,
    initializer_range: 0.3,
  });
  const m = LlamaModel.create(config, 5);
  base = await m.toHostTensors();
  groups = [];
  for (const [g, prompt] of [[1, 5, 6], [1, 7, 8]].entries()) {
    const r = await sample(m, Array(4).fill(prompt), { maxNewTokens: 5, temperature: 1, topK: 0, topP: 1, stopTokens: [2], seed: g });
    groups.push({
      groupId: `g${g}`,
      policyVersion: 0,
      promptTokens: prompt,
      completions: r.tokens.map((tokens, j) => ({ tokens, logprobs: r.logprobs[j]!, text: '', rewards: { r: j % 2 }, finishReason: r.finishReason[j]! })),
    });
  }
  m.dispose();
});

describe('dropout masks', () => {
  it('drop about p of the entries, keep the rest (flag 1), and repeat for a seed', () => {
    const m = dropoutMask(100_000, 0.25, 7);
    const zeros = m.filter((v) => v === 0).length / m.length;
    expect(zeros).toBeGreaterThan(0.24);
    expect(zeros).toBeLessThan(0.26);
    expect(m.every((v) => v === 0 || v === 1)).toBe(true);
    expect(dropoutMask(100_000, 0.25, 7)).toEqual(m);
    const other = dropoutMask(100_000, 0.25, 8);
    expect(other.filter((v, i) => v !== m[i]).length).toBeGreaterThan(20_000); // ~2 p (1 - p) differ
    expect(dropoutMask(1000, 0, 7).every((v) => v === 1)).toBe(true);
    expect(mixSeed(7, 0)).not.toBe(mixSeed(7, 1));
  });
});

describe('LoRA side path', () => {
  it('with a seeded mask is the hand computation s * ((x * mask / (1 - p)) A^T) B^T, zeros for slots not adapted', () => {
    const N = 3, d = 4, r = 2, outs = [5, 2, 2];
    const x = Array.from({ length: N * d }, (_, i) => Math.cos(i));
    const A = Array.from({ length: r * d }, (_, i) => Math.sin(i) * 0.5);
    const B = Array.from({ length: 2 * r }, (_, i) => i - 1.5);
    const lora: LoraLayer = { parts: [{ proj: 'qkv', slot: 1, a: tf.tensor2d(A, [r, d]), b: tf.tensor2d(B, [2, r]) }], scale: 2, dropout: 0.5, seed: 11 };
    const got = tf.tidy(() => sideTerm(lora, 'qkv', tf.tensor2d(x, [N, d]), outs)!.arraySync());
    const mask = dropoutMask(N * d, 0.5, mixSeed(11, 1)); // k_proj: slot 1 of the qkv projection
    expect(mask.some((v) => v === 0) && mask.some((v) => v === 1)).toBe(true);
    for (let n = 0; n < N; n++) {
      // inverted dropout: kept inputs times 1 / (1 - 0.5)
      const low = [0, 1].map((k) => [0, 1, 2, 3].reduce((s, j) => s + x[n * d + j]! * mask[n * d + j]! * 2 * A[k * d + j]!, 0));
      const want = [0, 0, 0, 0, 0, ...[0, 1].map((o) => 2 * (low[0]! * B[o * r]! + low[1]! * B[o * r + 1]!)), 0, 0];
      got[n]!.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    }
    expect(sideTerm(lora, 'o', tf.zeros([N, d]) as tf.Tensor2D, [d])).toBeNull();
    tf.dispose(lora.parts.flatMap((p) => [p.a, p.b]));
  });

  it('averaged over masks is the output without dropout', () => {
    const N = 2, d = 6, r = 3;
    const x = tf.tensor2d(Array.from({ length: N * d }, (_, i) => Math.cos(i) + 0.5), [N, d]);
    const parts = [{ proj: 'down' as const, slot: 0, a: tf.randomNormal([r, d], 0, 1, 'float32', 1) as tf.Tensor2D, b: tf.randomNormal([d, r], 0, 1, 'float32', 2) as tf.Tensor2D }];
    const plain = tf.tidy(() => sideTerm({ parts, scale: 1, dropout: 0.3, seed: null }, 'down', x, [d])!.arraySync());
    const K = 4000;
    const sum = tf.tidy(() => {
      let acc = tf.zeros([N, d]);
      for (let s = 0; s < K; s++) acc = acc.add(sideTerm({ parts, scale: 1, dropout: 0.3, seed: s }, 'down', x, [d])!);
      return acc.div(K).arraySync() as number[][];
    });
    const scale = Math.max(...plain.flat().map(Math.abs));
    plain.flat().forEach((v, i) => expect(Math.abs(sum.flat()[i]! - v)).toBeLessThan(0.05 * scale));
    tf.dispose([x, ...parts.flatMap((p) => [p.a, p.b])]);
  });

  it('gives the logits of the merged adapters, in the forward and in sampling, and frees what it made', async () => {
    const merged = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const side = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a = await trainedAdapters(SPEC, 3);
    merged.setAdapters(a);
    side.setAdapters(a, 'side');
    const x = tf.tensor2d(IDS, undefined, 'int32');
    const diff = tf.tidy(() => merged.logits(x).sub(side.logits(x)).abs().max().dataSync()[0]!);
    expect(diff).toBeLessThan(1e-5);
    const opts = { maxNewTokens: 6, temperature: 0, topK: 0, topP: 1, stopTokens: [], seed: 1 };
    await sample(side, [[1, 5, 6]], opts); // warm-up
    const before = tf.memory().numTensors;
    const s = await sample(side, [[1, 5, 6], [1, 7]], opts);
    const m = await sample(merged, [[1, 5, 6], [1, 7]], opts);
    expect(tf.memory().numTensors).toBe(before);
    expect(s.tokens).toEqual(m.tokens);
    s.logprobs.flat().forEach((v, i) => expect(v).toBeCloseTo(m.logprobs.flat()[i]!, 4));
    x.dispose();
    for (const o of [merged, side, a]) o.dispose();
  });
});

describe('lora_dropout in training', () => {
  it('at 0 leaves the forward as it was: the dropout seed changes nothing', async () => {
    const model = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a = await trainedAdapters(SPEC, 2);
    model.setAdapters(a);
    expect(logProbs(model, { dropoutSeed: 9 })).toEqual(logProbs(model));
    model.dispose();
    a.dispose();
  });

  it('above 0 drops only in a seeded forward: the same seed repeats, another seed differs, none is the merged model', async () => {
    const model = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a = await trainedAdapters({ ...SPEC, dropout: 0.5 }, 2);
    model.setAdapters(a);
    const plain = logProbs(model);
    const seeded = logProbs(model, { dropoutSeed: 9 });
    expect(logProbs(model, { dropoutSeed: 9 })).toEqual(seeded);
    expect(logProbs(model, { dropoutSeed: 10 })).not.toEqual(seeded);
    expect(seeded).not.toEqual(plain);
    // sampling and the reference (the base view) never drop
    const ref = model.baseView();
    const bare = LlamaModel.fromHostTensors(config, base);
    expect(logProbs(ref, { dropoutSeed: 9 })).toEqual(logProbs(bare));
    for (const o of [model, a, ref, bare]) o.dispose();
  });

  it('moves only A and B (the base bit-identical), deterministically, and differs from no dropout', async () => {
    const before = tf.memory().numTensors;
    const p0 = await trainAdapters({});
    const once = await trainAdapters({ lora_dropout: 0.3, kl_coef: 0.1 }, true);
    const again = await trainAdapters({ lora_dropout: 0.3, kl_coef: 0.1 });
    expect(maxDiff(once, again)).toBe(0);
    const noKl = await trainAdapters({ lora_dropout: 0.3 });
    expect(maxDiff(noKl, p0)).toBeGreaterThan(1e-4);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('with gradient checkpointing gives the same updates (each recomputed layer draws its forward mask)', async () => {
    const plain = await trainAdapters({ lora_dropout: 0.3 });
    const recomputed = await trainAdapters({ lora_dropout: 0.3, gradient_checkpointing: true });
    expect(maxDiff(plain, recomputed)).toBeLessThan(1e-5);
    const otherSeed = await trainAdapters({ lora_dropout: 0.3, seed: 12345 });
    expect(maxDiff(plain, otherSeed)).toBeGreaterThan(1e-4); // the masks follow the run's seed
  });
});

describe('lora_dropout on resume', () => {
  it('draws the masks an uninterrupted run would: 1 step, save, resume, 1 step equals 2 steps', async () => {
    const cfg = parseConfig({ group_size: 4, max_gen_len: 5, lr: 1e-2, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false, lora_r: 4, lora_alpha: 8, lora_dropout: 0.3 });
    const spec = { ...SPEC, dropout: 0.3 };
    const straight = await trainAdapters({ lora_dropout: 0.3 });
    const first = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a1 = await trainedAdapters(spec, 1);
    first.setAdapters(a1);
    const t1 = new GrpoTrainer({ config: cfg, policy: first });
    await t1.step(groups, 0);
    const saved = { adapters: await a1.toHostTensors(), optimizer: await t1.exportOptimizerState() };
    t1.dispose();
    first.dispose();
    a1.dispose();
    const resumed = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a2 = LoraAdapters.fromHostTensors(llamaParamShapes(config), spec, saved.adapters);
    resumed.setAdapters(a2);
    const t2 = new GrpoTrainer({ config: cfg, policy: resumed, policyVersion: 1 });
    t2.importOptimizerState(saved.optimizer);
    await t2.step(groups, 1);
    expect(maxDiff(await a2.toHostTensors(), straight)).toBe(0);
    t2.dispose();
    resumed.dispose();
    a2.dispose();
  });
});

describe('LoRA side path on every model family', () => {
  for (const family of ['llama3', 'qwen2', 'qwen3', 'gemma2']) {
    it(`${family}: the side path gives the merged logits, and a dropout forward repeats for its seed`, async () => {
      const { loadCheckpoint } = await import('../../src/model/checkpoint.js');
      const ckpt = await loadCheckpoint(join(import.meta.dirname, `../fixtures/hf-tiny-${family}`));
      const spec: LoraSpec = { r: 2, alpha: 4, dropout: 0.2, targetModules: 'all-linear' };
      const a = LoraAdapters.create(llamaParamShapes(ckpt.config), spec, 1);
      const host = await a.toHostTensors();
      for (const [name, t] of host) if (name.includes('lora_B')) t.data.forEach((_, i) => (t.data[i] = Math.cos(i) * 0.05));
      a.setHostTensors(host);
      const merged = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
      const side = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
      merged.setAdapters(a);
      side.setAdapters(a, 'side');
      const x = tf.tensor2d([[1, 5, 6, 7, 8, 9, 10, 11]], undefined, 'int32');
      expect(tf.tidy(() => merged.logits(x).sub(side.logits(x)).abs().max().dataSync()[0]!)).toBeLessThan(1e-4);
      const drop = (seed: number) => tf.tidy(() => merged.tokenLogProbs(x, { dropoutSeed: seed }).logp.dataSync() as Float32Array);
      expect(drop(3)).toEqual(drop(3));
      expect(drop(3)).not.toEqual(drop(4));
      x.dispose();
      for (const o of [merged, side, a]) o.dispose();
    });
  }
});
