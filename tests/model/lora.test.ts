/**
 * LoRA adapters (src/model/lora.ts): which layers they adapt, PEFT's names and shapes, that zero B
 * is exactly the base model, that the merged weights equal the adapters applied in the forward,
 * and that training moves only A and B (the base bit-identical) with the base as KL reference.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { LlamaModel } from '../../src/model/llama.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { LoraAdapters, baseFingerprint, linearLayers, loraTargets, mergeAdapters, peftNames, type LoraSpec } from '../../src/model/lora.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { parseConfig } from '../../src/shared/config.js';
import { isGrpoError } from '../../src/shared/errors.js';
import type { GroupRollout } from '../../src/shared/protocol.js';

const TOKENS = { vocabSize: 20, bosId: 1, eosId: 2, padId: 0 };
const SPEC: LoraSpec = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };

let config: LlamaConfig;
let base: NamedHostTensors;

function expectCode(fn: () => unknown, code: string, text?: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(isGrpoError(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    if (text) expect((err as Error).message).toMatch(text);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** Per-token log-probs of fixed ids under `model`, [B, T-1] as nested arrays. */
function logProbs(model: LlamaModel, ids: number[][]): number[][] {
  return tf.tidy(() => model.tokenLogProbs(tf.tensor2d(ids, undefined, 'int32')).logp.arraySync() as number[][]);
}

/** Adapters with B filled with random values too (a trained-looking adapter, not the identity). */
async function randomAdapters(spec: LoraSpec, seed: number): Promise<LoraAdapters> {
  const a = LoraAdapters.create(llamaParamShapes(config), spec, seed);
  const host = await a.toHostTensors();
  let x = seed;
  for (const [name, t] of host) {
    if (name.includes('lora_B')) for (let i = 0; i < t.data.length; i++) t.data[i] = (((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5) * 0.2;
  }
  a.setHostTensors(host);
  return a;
}

const IDS = [
  [1, 5, 6, 7, 8, 9],
  [1, 3, 4, 10, 11, 12],
];

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
  m.dispose();
});

describe('LoRA targets', () => {
  it('adapts the listed projections of every layer, and all-linear every linear layer but the head', () => {
    const shapes = llamaParamShapes(config);
    const t = loraTargets(shapes, SPEC);
    expect(t.map((x) => x.module)).toEqual([0, 1].flatMap((l) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `model.layers.${l}.self_attn.${p}`)));
    expect(t.find((x) => x.module.endsWith('0.self_attn.k_proj'))).toMatchObject({ out: 16, in: 32 }); // 2 kv heads x 8
    const all = loraTargets(shapes, { ...SPEC, targetModules: 'all-linear' });
    expect(all).toHaveLength(2 * 7);
    expect(all.some((x) => x.weight === 'lm_head.weight' || x.weight.includes('embed'))).toBe(false);
    expect(linearLayers(shapes)).toHaveLength(14);
  });

  it('refuses a name that matches nothing, listing the linear layers, and a rank above a layer dimension', () => {
    const shapes = llamaParamShapes(config);
    expectCode(() => loraTargets(shapes, { ...SPEC, targetModules: ['q_proj', 'qkv_proj'] }), 'GRPO_ERR_CONFIG', /qkv_proj matches no linear layer.*q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/);
    expectCode(() => loraTargets(shapes, { ...SPEC, r: 17 }), 'GRPO_ERR_CONFIG', /lora_r 17 exceeds the smaller dimension \(16\) of model\.layers\.0\.self_attn\.k_proj/);
  });
});

describe('LoRA adapters', () => {
  it("use PEFT's tensor names and shapes: lora_A [r, in], lora_B [out, r]", async () => {
    const a = LoraAdapters.create(llamaParamShapes(config), SPEC, 1);
    const host = await a.toHostTensors();
    expect(host.get('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')!.shape).toEqual([4, 32]);
    expect(host.get('base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight')!.shape).toEqual([32, 4]);
    expect(host.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape).toEqual([16, 4]);
    expect(host.size).toBe(2 * 2 * 4);
    // PEFT's default init: B zero, A uniform within 1/sqrt(in)
    const A = host.get(peftNames('model.layers.0.self_attn.q_proj').a)!.data;
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(32));
    expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.5 / Math.sqrt(32));
    expect(host.get(peftNames('model.layers.0.self_attn.q_proj').b)!.data.every((v) => v === 0)).toBe(true);
    expect(a.numParams()).toBe(2 * (4 * (32 + 32) + 4 * (32 + 16) * 2 + 4 * (32 + 32)));
    a.dispose();
  });

  it("with B zero give exactly the base model's log-probabilities", () => {
    const plain = LlamaModel.fromHostTensors(config, base);
    const adapted = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a = LoraAdapters.create(llamaParamShapes(config), SPEC, 1);
    adapted.setAdapters(a);
    expect(logProbs(adapted, IDS)).toEqual(logProbs(plain, IDS));
    tf.dispose([plain, adapted, a]);
  });

  it('merged into the weights give the logits of the adapters applied in the forward (1e-5)', async () => {
    const a = await randomAdapters({ ...SPEC, targetModules: 'all-linear' }, 7);
    const adapted = LlamaModel.fromHostTensors(config, base, { trainable: false });
    adapted.setAdapters(a);
    const merged = LlamaModel.fromHostTensors(config, mergeAdapters(base, a.targets, a.scale, await a.toHostTensors()));
    const ids = tf.tensor2d(IDS, undefined, 'int32');
    const [x, y] = tf.tidy(() => [adapted.logits(ids), merged.logits(ids)]);
    const diff = tf.tidy(() => x.sub(y).abs().max().dataSync()[0]!);
    expect(diff).toBeLessThan(1e-5);
    const plain = LlamaModel.fromHostTensors(config, base);
    const moved = tf.tidy(() => plain.logits(ids).sub(x).abs().max().dataSync()[0]!);
    expect(moved).toBeGreaterThan(1e-3); // the adapters do change the model
    tf.dispose([x, y, ids, adapted, merged, plain, a]);
  });

  it('sample with the adapters merged, and free what they made', async () => {
    const a = await randomAdapters(SPEC, 3);
    const adapted = LlamaModel.fromHostTensors(config, base, { trainable: false });
    adapted.setAdapters(a);
    const merged = LlamaModel.fromHostTensors(config, mergeAdapters(base, a.targets, a.scale, await a.toHostTensors()));
    const opts = { maxNewTokens: 5, temperature: 0, topK: 0, topP: 1, stopTokens: [2], seed: 1 };
    await sample(adapted, [[1, 5, 6], [1, 7]], opts); // grows the rotary tables once
    const before = tf.memory().numTensors;
    const r1 = await sample(adapted, [[1, 5, 6], [1, 7]], opts);
    expect(tf.memory().numTensors).toBe(before);
    const r2 = await sample(merged, [[1, 5, 6], [1, 7]], opts);
    expect(r1.tokens).toEqual(r2.tokens);
    tf.dispose([adapted, merged, a]);
  });

  it('refuse tensors of another base, and fingerprint the base they belong to', async () => {
    const a = LoraAdapters.create(llamaParamShapes(config), SPEC, 1);
    const host = await a.toHostTensors();
    const name = peftNames('model.layers.0.self_attn.q_proj').a;
    expectCode(() => a.setHostTensors(new Map([...host, [name, { shape: [4, 31], data: new Float32Array(124) }]])), 'GRPO_ERR_ADAPTER_MISMATCH', /\[4,31\].*\[4,32\]/);
    const extra = new Map([...host, ['base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight', host.get(name)!]]);
    expectCode(() => a.setHostTensors(extra), 'GRPO_ERR_ADAPTER_MISMATCH', /layers\.9.*matches no adapted layer/);
    const other = new Map(base);
    const w = base.get('model.norm.weight')!;
    other.set('model.norm.weight', { shape: w.shape, data: w.data.map((v) => v + 1) });
    expect(baseFingerprint(base)).toBe(baseFingerprint(new Map([...base].reverse())));
    expect(baseFingerprint(other)).not.toBe(baseFingerprint(base));
    a.dispose();
  });
});

describe('GRPO with LoRA', () => {
  it('moves only the adapters: the base weights stay bit-identical, the base is the KL reference', async () => {
    const model = LlamaModel.fromHostTensors(config, base, { trainable: false });
    const a = LoraAdapters.create(llamaParamShapes(config), SPEC, 1);
    model.setAdapters(a);
    const groups: GroupRollout[] = [];
    for (const [g, prompt] of [[1, 5, 6], [1, 7, 8]].entries()) {
      const r = await sample(model, Array(4).fill(prompt), { maxNewTokens: 5, temperature: 1, topK: 0, topP: 1, stopTokens: [2], seed: g });
      groups.push({
        groupId: `g${g}`,
        policyVersion: 0,
        promptTokens: prompt,
        completions: r.tokens.map((tokens, j) => ({ tokens, logprobs: r.logprobs[j]!, text: '', rewards: { r: j % 2 }, finishReason: r.finishReason[j]! })),
      });
    }
    const cfg = parseConfig({ group_size: 4, max_gen_len: 5, kl_coef: 0.1, lr: 1e-2, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false, lora_r: 4 });
    const before = tf.memory().numTensors;
    const trainer = new GrpoTrainer({ config: cfg, policy: model });
    expect(trainer.hasReference).toBe(true);
    // AdamW moments for the adapters only, and no copy of the weights for the reference (the base
    // view shares them; it holds only its own two rotary tables)
    expect(tf.memory().numTensors - before).toBe(2 * a.variables().size + 2);
    const adaptersBefore = await a.toHostTensors();
    for (let s = 0; s < 3; s++) {
      const m = await trainer.step(groups, s);
      expect(m.updated).toBe(true);
      if (s > 0) expect(m.kl).toBeGreaterThan(0); // the policy moved away from the base
    }
    const after = await model.toHostTensors();
    for (const [name, t] of base) expect(after.get(name)!.data).toEqual(t.data);
    const adaptersAfter = await a.toHostTensors();
    const moved = [...adaptersAfter].filter(([n, t]) => t.data.some((v, i) => v !== adaptersBefore.get(n)!.data[i]));
    expect(moved.length).toBe(adaptersAfter.size); // A and B of every layer received gradients
    trainer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([model, a]);
  });
});

describe('LoRA with gradient checkpointing', () => {
  it('gives the adapters the same gradients with each decoder layer recomputed in backward', async () => {
    const groups: GroupRollout[] = [];
    const probe = LlamaModel.fromHostTensors(config, base, { trainable: false });
    for (const [g, prompt] of [[1, 5, 6], [1, 7, 8]].entries()) {
      const r = await sample(probe, Array(4).fill(prompt), { maxNewTokens: 5, temperature: 1, topK: 0, topP: 1, stopTokens: [2], seed: g });
      groups.push({
        groupId: `g${g}`,
        policyVersion: 0,
        promptTokens: prompt,
        completions: r.tokens.map((tokens, j) => ({ tokens, logprobs: r.logprobs[j]!, text: '', rewards: { r: j % 2 }, finishReason: r.finishReason[j]! })),
      });
    }
    probe.dispose();
    const after: NamedHostTensors[] = [];
    for (const checkpointing of [false, true]) {
      const model = LlamaModel.fromHostTensors(config, base, { trainable: false });
      const a = LoraAdapters.create(llamaParamShapes(config), SPEC, 1);
      model.setAdapters(a);
      const cfg = parseConfig({ group_size: 4, max_gen_len: 5, lr: 1e-2, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false, lora_r: 4, gradient_checkpointing: checkpointing });
      const trainer = new GrpoTrainer({ config: cfg, policy: model });
      for (let s = 0; s < 2; s++) await trainer.step(groups, s);
      after.push(await a.toHostTensors());
      trainer.dispose();
      tf.dispose([model, a]);
    }
    for (const [name, t] of after[0]!) {
      const other = after[1]!.get(name)!.data;
      expect(Math.max(...t.data.map((v, i) => Math.abs(v - other[i]!))), name).toBeLessThan(1e-5);
    }
  });
});

describe('LoRA on every model family', () => {
  for (const family of ['llama3', 'qwen2', 'qwen3', 'gemma2']) {
    it(`${family}: zero B is the base exactly, and merged weights give the logits of the adapters applied`, async () => {
      const { loadCheckpoint } = await import('../../src/model/checkpoint.js');
      const ckpt = await loadCheckpoint(join(import.meta.dirname, `../fixtures/hf-tiny-${family}`));
      const shapes = llamaParamShapes(ckpt.config);
      const spec: LoraSpec = { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' };
      const plain = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
      const adapted = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
      const a = LoraAdapters.create(shapes, spec, 1);
      adapted.setAdapters(a);
      const ids = [[1, 5, 6, 7, 8, 9, 10, 11]];
      expect(logProbs(adapted, ids)).toEqual(logProbs(plain, ids));
      const host = await a.toHostTensors();
      for (const [name, t] of host) if (name.includes('lora_B')) t.data.forEach((_, i) => (t.data[i] = Math.cos(i) * 0.05));
      a.setHostTensors(host);
      const merged = LlamaModel.fromHostTensors(ckpt.config, mergeAdapters(ckpt.weights, a.targets, a.scale, host));
      const x = tf.tensor2d(ids, undefined, 'int32');
      const diff = tf.tidy(() => adapted.logits(x).sub(merged.logits(x)).abs().max().dataSync()[0]!);
      const moved = tf.tidy(() => adapted.logits(x).sub(plain.logits(x)).abs().max().dataSync()[0]!);
      expect(diff).toBeLessThan(1e-4);
      expect(moved).toBeGreaterThan(1e-4);
      tf.dispose([x, plain, adapted, merged, a]);
    });
  }
});
