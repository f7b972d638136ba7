/**
 * Named model sizes and the benchmark config. Widths follow Llama's proportions: SwiGLU width
 * about 8/3 of hidden (rounded up to a multiple of 16), head_dim 16-64, and grouped-query
 * attention from `medium` up (half as many kv heads), which halves the KV cache while sampling.
 *
 *   size     hidden  inter  layers  heads  kv  params (vocab 64, tied)
 *   tiny         64    176       2      4   4  ~0.1 M
 *   small       128    352       4      4   4  ~0.8 M   (the reference config's body)
 *   medium      256    688       6      8   4  ~4.4 M
 *   base        512   1376       8      8   4  ~23 M
 */
import { GrpoError } from '../shared/errors.js';
import { validateLlamaConfig } from './llama-config.js';
import type { LlamaConfig } from './types.js';

export type ModelSize = 'tiny' | 'small' | 'medium' | 'base';

export const MODEL_SIZES: readonly ModelSize[] = ['tiny', 'small', 'medium', 'base'];

type Body = Pick<
  LlamaConfig,
  | 'hidden_size'
  | 'intermediate_size'
  | 'num_hidden_layers'
  | 'num_attention_heads'
  | 'num_key_value_heads'
  | 'max_position_embeddings'
>;

function body(hidden: number, inter: number, layers: number, heads: number, kv: number, maxPos: number): Body {
  return {
    hidden_size: hidden,
    intermediate_size: inter,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    max_position_embeddings: maxPos, // tokens; prompts + completions of the built-in tasks fit
  };
}

const BODIES: Record<ModelSize, Body> = {
  tiny: body(64, 176, 2, 4, 4, 256),
  small: body(128, 352, 4, 4, 4, 256),
  medium: body(256, 688, 6, 8, 4, 512),
  base: body(512, 1376, 8, 8, 4, 1024),
};

export interface PresetTokens {
  vocabSize: number;
  bosId: number | null;
  eosId: number;
  padId: number;
}

/**
 * A complete LlamaConfig for a named size and a tokenizer's special tokens; `overrides` replace
 * any field (e.g. max_position_embeddings for long tasks). The result is validated.
 */
export function presetConfig(size: ModelSize, tokens: PresetTokens, overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  const body = BODIES[size];
  if (!body) {
    throw new GrpoError('GRPO_ERR_MODEL_CONFIG', `unknown model size ${JSON.stringify(size)}; use one of ${MODEL_SIZES.join(', ')}`);
  }
  const config: LlamaConfig = {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: tokens.vocabSize,
    ...body,
    rms_norm_eps: 1e-5, // Llama 2's value
    rope_theta: 10000,
    tie_word_embeddings: true, // small vocabularies: the head would otherwise be a large share of the params
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: tokens.bosId,
    eos_token_id: tokens.eosId,
    pad_token_id: tokens.padId,
    torch_dtype: 'float32',
    initializer_range: 0.02,
    ...overrides,
  };
  validateLlamaConfig(config);
  return config;
}

/**
 * The benchmark model of issue 2 (vocab 64, hidden 128, SwiGLU 352, 4 layers, 4 heads, no GQA,
 * tied embeddings, about 0.8 M parameters), trained at batch 32 x sequence 64.
 */
export const REFERENCE_CONFIG: LlamaConfig = Object.freeze(
  presetConfig('small', { vocabSize: 64, bosId: 1, eosId: 2, padId: 0 }),
);
