/**
 * Structural checks on a LlamaConfig before a model is built from it: the sizes must be positive
 * integers and the attention heads must split evenly, or the forward pass would fail later with an
 * opaque shape error deep inside TensorFlow.js.
 */
import { GrpoError } from '../shared/errors.js';
import { headDim } from './llama-params.js';
import type { LlamaConfig } from './types.js';

const POSITIVE_INT_FIELDS = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'max_position_embeddings',
] as const;

/** Throws GRPO_ERR_MODEL_CONFIG naming the first field that cannot describe a working model. */
export function validateLlamaConfig(c: LlamaConfig): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_MODEL_CONFIG', msg);
  };
  if (c.model_type !== 'llama') fail(`model_type is ${JSON.stringify(c.model_type)}, only "llama" is supported`);
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
  if (c.hidden_act !== 'silu') fail(`hidden_act is ${JSON.stringify(c.hidden_act)}, only "silu" is supported`);
  if (c.attention_bias || c.mlp_bias) fail('attention_bias and mlp_bias must be false: biases are not supported');
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
