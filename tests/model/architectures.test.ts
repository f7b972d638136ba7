/**
 * The per-family switches around the one forward pass: config.json parsing with each family's
 * transformers defaults, the refusals, llama3 rotary scaling, the parameter tables, fresh weights,
 * and gradients reaching every parameter of every family. Logits against PyTorch are in
 * hf-families.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { archOf, SUPPORTED_MODEL_TYPES } from '../../src/model/architecture.js';
import { configJsonText, parseModelConfig } from '../../src/model/checkpoint-config.js';
import { geluTanh } from '../../src/model/llama-forward.js';
import { LlamaModel } from '../../src/model/llama.js';
import { llamaParamShapes, validateLlamaWeights } from '../../src/model/llama-params.js';
import { inverseFrequencies } from '../../src/model/rope.js';
import type { ModelConfig, ModelType, NamedHostTensors } from '../../src/model/types.js';
import { expectCode } from '../helpers.js';

/** A small config.json of a family, with only the fields every family requires. */
function raw(type: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: type,
    vocab_size: 24,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    initializer_range: 0.3, // peaky outputs, so gradients are far from zero
    ...extra,
  };
}

/** Per family, the options that make its tiny model exercise every switch. */
const SMALL: Record<ModelType, Record<string, unknown>> = {
  llama: { attention_bias: true, mlp_bias: true, head_dim: 6, rope_scaling: { rope_type: 'llama3', factor: 4, original_max_position_embeddings: 16 } },
  qwen2: { tie_word_embeddings: true },
  qwen3: { head_dim: 8 },
  gemma2: { head_dim: 8, sliding_window: 3, attn_logit_softcapping: 2, final_logit_softcapping: 4, query_pre_attn_scalar: 10 },
};
const small = (type: ModelType): ModelConfig => parseModelConfig(raw(type, SMALL[type]), `${type} test config`);

describe('config.json of each family', () => {
  it("fills each family's transformers defaults", () => {
    const q2 = parseModelConfig(raw('qwen2'));
    expect(q2).toMatchObject({ architectures: ['Qwen2ForCausalLM'], tie_word_embeddings: false, hidden_act: 'silu' });
    expect(q2).not.toHaveProperty('head_dim');
    expect(q2).not.toHaveProperty('attention_bias');
    expect(parseModelConfig(raw('qwen3', { head_dim: undefined }))).toMatchObject({ head_dim: 128, attention_bias: false });
    const g = parseModelConfig(raw('gemma2', { max_position_embeddings: undefined }));
    expect(g).toMatchObject({
      architectures: ['Gemma2ForCausalLM'],
      head_dim: 256,
      hidden_act: 'gelu_pytorch_tanh',
      hidden_activation: 'gelu_pytorch_tanh',
      tie_word_embeddings: true,
      query_pre_attn_scalar: 256,
      attn_logit_softcapping: 50,
      final_logit_softcapping: 30,
      sliding_window: 4096,
      max_position_embeddings: 8192,
    });
    expect(parseModelConfig(raw('gemma2', { final_logit_softcapping: null, sliding_window: null }))).toMatchObject({
      final_logit_softcapping: null,
      sliding_window: null,
    });
    const l3 = parseModelConfig(raw('llama', { rope_scaling: { type: 'llama3', factor: 8 } }));
    expect(l3.rope_scaling).toEqual({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    expect(parseModelConfig(raw('llama', { rope_scaling: { rope_type: 'default' } }))).not.toHaveProperty('rope_scaling');
  });

  it('parses its own output to the same config, and writes float fields as floats', () => {
    for (const type of SUPPORTED_MODEL_TYPES) {
      const c = small(type);
      const text = configJsonText(c);
      expect(parseModelConfig(JSON.parse(text))).toEqual(c);
      expect(text).toContain('"rope_theta": 10000.0');
    }
    expect(configJsonText(small('gemma2'))).toContain('"attn_logit_softcapping": 2.0');
    expect(configJsonText(small('llama'))).toContain('"factor": 4.0');
  });

  it('reads transformers 5 configs (rope_parameters, layer_types) as the transformers 4 files they were saved from', () => {
    // tests/fixtures/hf-v5-configs: each fixture's config.json loaded and saved by transformers 5.17.0
    for (const family of ['llama3', 'qwen2', 'qwen3', 'gemma2']) {
      const read = (path: string) => JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures', path), 'utf8'));
      const v5 = read(`hf-v5-configs/${family}.json`);
      expect(v5).toHaveProperty('rope_parameters');
      expect(v5).not.toHaveProperty('rope_theta');
      const { layer_types: kinds, ...fromV5 } = parseModelConfig(v5);
      expect(fromV5, family).toEqual(parseModelConfig(read(`hf-tiny-${family}/config.json`)));
      if (family === 'gemma2') expect(kinds).toEqual(['sliding_attention', 'full_attention', 'sliding_attention']);
    }
    const scaled = parseModelConfig(raw('llama', { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 5e5 } }));
    expect(scaled).toMatchObject({ rope_theta: 5e5, rope_scaling: { rope_type: 'linear', factor: 2 } });
    // Gemma2's sliding layers follow layer_types when a file gives them
    const g = small('gemma2');
    expect(archOf({ ...g, layer_types: ['full_attention', 'sliding_attention', 'sliding_attention'] }).windows).toEqual([null, 3, 3]);
    const custom = { ...g, layer_types: ['full_attention', 'full_attention', 'sliding_attention'] as const };
    expect(parseModelConfig(JSON.parse(configJsonText(custom))).layer_types).toEqual(custom.layer_types);
  });

  it('refuses what it cannot compute, naming the field; an unknown model_type lists the supported ones', () => {
    const cases: [Record<string, unknown>, string][] = [
      [raw('gemma2', { hidden_activation: 'gelu' }), 'hidden_activation'],
      [raw('qwen2', { use_sliding_window: true }), 'use_sliding_window'],
      [raw('qwen3', { hidden_act: 'gelu' }), 'hidden_act'],
      [raw('llama', { rope_scaling: { rope_type: 'yarn', factor: 4 } }), 'rope_scaling.rope_type'],
      [raw('llama', { rope_scaling: { rope_type: 'linear' } }), 'factor'],
      [raw('gemma2', { attn_logit_softcapping: -1 }), 'attn_logit_softcapping'],
      [raw('gemma2', { sliding_window: 2.5 }), 'sliding_window'],
      [raw('qwen3', { attention_bias: 1 }), 'attention_bias'],
      [raw('llama', { rope_theta: 1e4, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }), 'rope_parameters.rope_theta'],
      [raw('llama', { rope_scaling: { rope_type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'default' } }), 'rope_parameters'],
      [raw('llama', { rope_parameters: { rope_type: 'yarn', factor: 2 } }), 'rope_parameters.rope_type is "yarn"'],
      [raw('gemma2', { rope_parameters: { full_attention: { rope_type: 'default' } } }), 'per-layer-type'],
      [raw('qwen2', { layer_types: ['full_attention', 'sliding_attention', 'full_attention'] }), 'layer_types'],
      [raw('gemma2', { layer_types: ['full_attention'] }), 'layer_types'],
    ];
    for (const [input, field] of cases) expectCode(() => parseModelConfig(input, 'x.json'), 'GRPO_ERR_CHECKPOINT_CONFIG', field);
    expectCode(() => parseModelConfig(raw('mistral'), 'x.json'), 'GRPO_ERR_MODEL_TYPE', 'x.json: model_type is "mistral"; supported: llama, qwen2, qwen3, gemma2');
    expectCode(() => parseModelConfig(raw('Qwen2')), 'GRPO_ERR_MODEL_TYPE', 'supported');
    // a config object built in code is checked the same way
    expectCode(() => LlamaModel.create({ ...small('qwen2'), model_type: 'phi3' as ModelType }, 1), 'GRPO_ERR_MODEL_TYPE', 'phi3');
    expectCode(() => LlamaModel.create({ ...small('llama'), sliding_window: 4 }, 1), 'GRPO_ERR_MODEL_CONFIG', 'sliding_window');
    expectCode(() => LlamaModel.create({ ...small('gemma2'), hidden_act: 'silu' }, 1), 'GRPO_ERR_MODEL_CONFIG', 'gelu_pytorch_tanh');
  });
});

describe('architecture switches', () => {
  it('llama3 rotary scaling keeps high frequencies, divides low ones and blends the band between', () => {
    // hd 12, theta 10000: wavelengths 6.3, 29, 135, 628, ... against 64/4 = 16 and 64/1 = 64
    const plain = inverseFrequencies(12, 10000, null);
    const scaled = inverseFrequencies(12, 10000, {
      rope_type: 'llama3',
      factor: 4,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    });
    expect(scaled[0]).toBe(plain[0]);
    const smooth = (64 / ((2 * Math.PI) / plain[1]) - 1) / 3;
    expect(scaled[1]).toBeCloseTo((1 - smooth) * (plain[1] / 4) + smooth * plain[1], 7);
    for (let i = 2; i < 6; i++) expect(scaled[i]).toBeCloseTo(plain[i] / 4, 9);
    expect(inverseFrequencies(12, 10000, { rope_type: 'linear', factor: 2 })[3]).toBeCloseTo(plain[3] / 2, 9);
  });

  it('derives the switches of each family', () => {
    expect(archOf(small('qwen2'))).toMatchObject({ qkvBias: true, oBias: false, mlpBias: false, qkNorm: false });
    expect(archOf(small('qwen3'))).toMatchObject({ qkvBias: false, qkNorm: true, queryScale: 1 / Math.sqrt(8) });
    expect(archOf(small('llama'))).toMatchObject({ qkvBias: true, oBias: true, mlpBias: true });
    const g = archOf(small('gemma2'));
    expect(g).toMatchObject({ normOffset: 1, sandwich: true, act: 'gelu_tanh', attnSoftcap: 2, finalSoftcap: 4, windows: [3, null, 3] });
    expect(g.queryScale).toBeCloseTo(1 / Math.sqrt(10), 12);
    expect(g.embedScale).toBe(Math.fround(4));
  });

  it('names the parameters transformers names, and the first mismatch with both shapes', () => {
    const q2 = llamaParamShapes(small('qwen2'));
    expect(q2.get('model.layers.0.self_attn.q_proj.bias')).toEqual([16]);
    expect(q2.get('model.layers.0.self_attn.k_proj.bias')).toEqual([8]);
    expect(q2.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    expect(q2.has('lm_head.weight')).toBe(false);
    const q3 = llamaParamShapes(small('qwen3'));
    expect(q3.get('model.layers.2.self_attn.q_norm.weight')).toEqual([8]);
    expect(q3.get('model.layers.0.self_attn.q_proj.weight')).toEqual([32, 16]); // 4 heads x head_dim 8
    const g = llamaParamShapes(small('gemma2'));
    expect(g.get('model.layers.1.pre_feedforward_layernorm.weight')).toEqual([16]);
    expect(g.get('model.layers.1.post_feedforward_layernorm.weight')).toEqual([16]);
    expect(llamaParamShapes(small('llama')).get('model.layers.0.mlp.down_proj.bias')).toEqual([16]);

    const c = small('qwen3');
    const weights: NamedHostTensors = new Map();
    for (const [name, shape] of llamaParamShapes(c)) weights.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    weights.set('model.layers.1.self_attn.k_norm.weight', { shape: [16], data: new Float32Array(16) });
    expectCode(() => validateLlamaWeights(c, weights), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'model.layers.1.self_attn.k_norm.weight has shape [16], config expects [8]');
    weights.delete('model.layers.0.self_attn.q_norm.weight');
    expectCode(() => validateLlamaWeights(c, weights), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'missing parameter model.layers.0.self_attn.q_norm.weight (the qwen3 config expects shape [8])');
  });

  it('gelu_pytorch_tanh matches its formula and has the autodiff gradient of it', async () => {
    const x = tf.tensor1d([-3, -1, -0.2, 0, 0.5, 2, 4]);
    const ref = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    const y = await geluTanh(x).data();
    [-3, -1, -0.2, 0, 0.5, 2, 4].forEach((v, i) => expect(y[i]).toBeCloseTo(ref(v), 6));
    const g = await tf.grad((t: tf.Tensor) => geluTanh(t).sum())(x).data();
    [-3, -1, -0.2, 0, 0.5, 2, 4].forEach((v, i) => expect(g[i]).toBeCloseTo((ref(v + 1e-3) - ref(v - 1e-3)) / 2e-3, 4));
    x.dispose();
  });
});

describe.each(SUPPORTED_MODEL_TYPES)('a fresh %s model', (type) => {
  it('starts with norms that multiply by 1 and zero biases', async () => {
    const m = LlamaModel.create(small(type), 3);
    const normValue = type === 'gemma2' ? 0 : 1;
    for (const [name, v] of m.variables()) {
      const data = await v.data();
      if (name.endsWith('norm.weight')) expect(data.every((x) => x === normValue), name).toBe(true);
      else if (name.endsWith('.bias')) expect(data.every((x) => x === 0), name).toBe(true);
    }
    m.dispose();
  });

  it('passes finite, non-zero gradients to every parameter (biases and norms included), leaking nothing', () => {
    const m = LlamaModel.create(small(type), 4);
    const ids = tf.tensor2d(
      [
        [1, 5, 6, 7, 8, 9, 10],
        [0, 0, 1, 3, 4, 5, 6],
      ],
      [2, 7],
      'int32',
    );
    // zero-initialised biases and Gemma's zero norm weights still get gradients at the start
    const run = () => tf.variableGrads(() => m.tokenLogProbs(ids, { leftPad: [0, 2] }).logp.mean().neg() as tf.Scalar);
    const warm = run();
    tf.dispose([warm.value, ...Object.values(warm.grads)]);
    const before = tf.memory().numTensors;
    const { value, grads } = run();
    expect(Object.keys(grads).length).toBe(m.variables().size);
    for (const [name, v] of m.variables()) {
      const data = grads[v.name].dataSync();
      expect(data.every(Number.isFinite), name).toBe(true);
      expect(data.some((x) => x !== 0), name).toBe(true);
    }
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
    m.dispose();
  });
});
