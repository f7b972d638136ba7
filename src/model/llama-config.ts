/**
 * Structural checks on a ModelConfig before a model is built from it: a supported model_type,
 * sizes that are positive integers, attention heads that split evenly, and per-family options
 * in range, or the forward pass would fail later with an opaque shape error deep inside
 * TensorFlow.js (or, worse, run a different model than the file describes).
 */
import { GrpoError } from '../shared/errors.js';
import { headDim, SUPPORTED_MODEL_TYPES, unsupportedModelType } from './architecture.js';
import type { ModelConfig } from './types.js';

const POSITIVE_INT_FIELDS = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'max_position_embeddings',
] as const;

/** The MLP activation each family uses; anything else would be a different model. */
const ACTIVATION: Record<ModelConfig['model_type'], ModelConfig['hidden_act']> = {
  llama: 'silu',
  qwen2: 'silu',
  qwen3: 'silu',
  gemma2: 'gelu_pytorch_tanh',
};

/**
 * Throws GRPO_ERR_MODEL_TYPE for an unknown model_type, else GRPO_ERR_MODEL_CONFIG naming the
 * first field that cannot describe a working model.
 */
export function validateLlamaConfig(c: ModelConfig): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_MODEL_CONFIG', msg);
  };
  if (!SUPPORTED_MODEL_TYPES.includes(c.model_type)) throw unsupportedModelType(c.model_type, '');
  for (const key of POSITIVE_INT_FIELDS) {
    const v = c[key];
    if (!Number.isInteger(v) || v < 1) fail(`${key} is ${v}, it must be a positive integer`);
  }
  if (c.head_dim === undefined && c.hidden_size % c.num_attention_heads !== 0) {
    fail(
      `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}; ` +
        'change one of them or set head_dim',
    );
  }
  const hd = headDim(c);
  if (!Number.isInteger(hd) || hd < 2 || hd % 2 !== 0) {
    fail(`head_dim is ${hd}, rotary embeddings need an even integer >= 2`);
  }
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    fail(
      `num_key_value_heads ${c.num_key_value_heads} does not divide num_attention_heads ` +
        `${c.num_attention_heads}; grouped-query attention needs whole groups`,
    );
  }
  if (!(c.rms_norm_eps > 0) || !Number.isFinite(c.rms_norm_eps)) fail(`rms_norm_eps is ${c.rms_norm_eps}, it must be > 0`);
  if (!(c.rope_theta > 0) || !Number.isFinite(c.rope_theta)) fail(`rope_theta is ${c.rope_theta}, it must be > 0`);
  if (!(c.initializer_range >= 0) || !Number.isFinite(c.initializer_range)) {
    fail(`initializer_range is ${c.initializer_range}, it must be >= 0`);
  }
  const act = ACTIVATION[c.model_type];
  if (c.hidden_act !== act) fail(`hidden_act is ${JSON.stringify(c.hidden_act)}, a ${c.model_type} model uses "${act}"`);
  checkFamilyOptions(c, fail);
  for (const key of ['bos_token_id', 'pad_token_id'] as const) {
    const v = c[key];
    if (v !== null && (!Number.isInteger(v) || v < 0 || v >= c.vocab_size)) {
      fail(`${key} is ${v}, it must be null or a token id in [0, ${c.vocab_size})`);
    }
  }
  const eos = c.eos_token_id === null ? [] : Array.isArray(c.eos_token_id) ? c.eos_token_id : [c.eos_token_id];
  for (const v of eos) {
    if (!Number.isInteger(v) || v < 0 || v >= c.vocab_size) {
      fail(`eos_token_id ${v} is not a token id in [0, ${c.vocab_size})`);
    }
  }
}

/** Fields only some families have: each must be absent elsewhere and in range where it counts. */
function checkFamilyOptions(c: ModelConfig, fail: (msg: string) => never): void {
  const positive = (key: string, v: unknown, integer: boolean): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      fail(`${key} is ${JSON.stringify(v)}, it must be ${integer ? 'a positive integer' : 'a positive number'}`);
    }
  };
  const only = (key: keyof ModelConfig, families: ModelConfig['model_type'][]): void => {
    const v = c[key];
    if (v !== undefined && v !== null && v !== false && !families.includes(c.model_type)) {
      fail(`${key} is ${JSON.stringify(v)}, but a ${c.model_type} model has no such option (it belongs to ${families.join(', ')})`);
    }
  };
  only('mlp_bias', ['llama']);
  only('attention_bias', ['llama', 'qwen3', 'gemma2']);
  only('query_pre_attn_scalar', ['gemma2']);
  only('attn_logit_softcapping', ['gemma2']);
  only('final_logit_softcapping', ['gemma2']);
  only('sliding_window', ['gemma2']);
  only('layer_types', ['gemma2']);
  const kinds = c.layer_types;
  if (kinds !== undefined && (kinds.length !== c.num_hidden_layers || !kinds.every((k) => k === 'sliding_attention' || k === 'full_attention'))) {
    fail(`layer_types has ${kinds.length} entries for ${c.num_hidden_layers} layers, each must be "sliding_attention" or "full_attention"`);
  }
  for (const key of ['attn_logit_softcapping', 'final_logit_softcapping'] as const) {
    if (c[key] !== undefined && c[key] !== null) positive(key, c[key], false);
  }
  if (c.query_pre_attn_scalar !== undefined) positive('query_pre_attn_scalar', c.query_pre_attn_scalar, false);
  if (c.sliding_window !== undefined && c.sliding_window !== null) positive('sliding_window', c.sliding_window, true);
  const s = c.rope_scaling;
  if (s !== undefined && s !== null) {
    positive('rope_scaling.factor', s.factor, false);
    if (s.rope_type === 'llama3') {
      positive('rope_scaling.low_freq_factor', s.low_freq_factor, false);
      positive('rope_scaling.high_freq_factor', s.high_freq_factor, false);
      positive('rope_scaling.original_max_position_embeddings', s.original_max_position_embeddings, true);
      if (!(s.high_freq_factor > s.low_freq_factor)) {
        fail(`rope_scaling.high_freq_factor ${s.high_freq_factor} must exceed low_freq_factor ${s.low_freq_factor}`);
      }
    } else if (s.rope_type !== 'linear') {
      fail(`rope_scaling.rope_type is ${JSON.stringify((s as { rope_type: unknown }).rope_type)}; supported: linear, llama3`);
    }
  }
}

/** The same check under a name that is less tied to Llama. */
export const validateModelConfig = validateLlamaConfig;
