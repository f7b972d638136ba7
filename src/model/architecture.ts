/**
 * What distinguishes the supported decoder families, as options of the one forward pass
 * (llama-forward.ts) rather than four copies of it. Every family is the same pre-norm decoder:
 * embeddings, N x (attention with rotary embeddings and grouped-query heads, gated MLP), final
 * norm, lm_head. They differ only in the switches below, derived from config.json by `archOf`.
 *
 *   model_type  qkv bias      o bias     mlp bias   q/k norm  norm      extra norms  MLP     capping  window
 *   llama       attn_bias     attn_bias  mlp_bias   -         w         -            SwiGLU  -        -
 *   qwen2       always        -          -          -         w         -            SwiGLU  -        -
 *   qwen3       attn_bias     attn_bias  -          per head  w         -            SwiGLU  -        -
 *   gemma2      attn_bias     attn_bias  -          -         (1 + w)   pre/post FF  GeGLU   yes      even layers
 *
 * Gemma2 also scales the embeddings by sqrt(hidden_size) and attention scores by
 * query_pre_attn_scalar^-1/2 instead of head_dim^-1/2.
 */
import { GrpoError } from '../shared/errors.js';
import type { ModelConfig, ModelType } from './types.js';

export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['llama', 'qwen2', 'qwen3', 'gemma2'];

/** The class name transformers instantiates for each model type (config.json `architectures`). */
export const ARCHITECTURE_CLASS: Readonly<Record<ModelType, string>> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
};

export interface Arch {
  qkvBias: boolean; // q_proj, k_proj, v_proj carry .bias
  oBias: boolean; // o_proj carries .bias
  mlpBias: boolean; // gate_proj, up_proj, down_proj carry .bias
  qkNorm: boolean; // self_attn.q_norm / k_norm: RMSNorm over head_dim on each head before RoPE
  normOffset: 0 | 1; // RMSNorm multiplies by (normOffset + weight); Gemma stores weight - 1
  sandwich: boolean; // Gemma2: post_attention_layernorm on the attention output, pre/post_feedforward_layernorm around the MLP
  embedScale: number; // embeddings are multiplied by this (Gemma: sqrt(hidden_size) rounded to float32)
  act: 'silu' | 'gelu_tanh'; // gate activation of the gated MLP
  queryScale: number; // attention scores = q.k * queryScale
  attnSoftcap: number | null; // scores -> cap * tanh(scores / cap) before the mask
  finalSoftcap: number | null; // logits -> cap * tanh(logits / cap)
  /** Per layer, how many positions (itself included) a query sees; null = all earlier ones. */
  windows: (number | null)[];
}

/** GRPO_ERR_MODEL_TYPE naming the supported types; raised for any unknown model_type. */
export function unsupportedModelType(value: unknown, where: string): GrpoError {
  return new GrpoError(
    'GRPO_ERR_MODEL_TYPE',
    `${where}model_type is ${value === undefined ? 'missing' : JSON.stringify(value)}; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
  );
}

export function headDim(c: ModelConfig): number {
  return c.head_dim ?? c.hidden_size / c.num_attention_heads;
}

/** The forward-pass switches of a config's family. Throws GRPO_ERR_MODEL_TYPE for an unknown one. */
export function archOf(c: ModelConfig): Arch {
  const hd = headDim(c);
  const plain = {
    qkvBias: c.attention_bias === true,
    oBias: c.attention_bias === true,
    mlpBias: false,
    qkNorm: false,
    normOffset: 0 as const,
    sandwich: false,
    embedScale: 1,
    act: 'silu' as const,
    queryScale: 1 / Math.sqrt(hd),
    attnSoftcap: null,
    finalSoftcap: null,
    windows: new Array<number | null>(c.num_hidden_layers).fill(null),
  };
  switch (c.model_type) {
    case 'llama':
      return { ...plain, mlpBias: c.mlp_bias === true };
    case 'qwen2':
      return { ...plain, qkvBias: true, oBias: false };
    case 'qwen3':
      return { ...plain, qkNorm: true };
    case 'gemma2': {
      const w = c.sliding_window ?? null;
      return {
        ...plain,
        normOffset: 1,
        sandwich: true,
        embedScale: Math.fround(Math.sqrt(c.hidden_size)),
        act: 'gelu_tanh',
        queryScale: 1 / Math.sqrt(c.query_pre_attn_scalar ?? hd),
        attnSoftcap: c.attn_logit_softcapping ?? null,
        finalSoftcap: c.final_logit_softcapping ?? null,
        // transformers: layer_types, by default "sliding_attention" on even layers
        windows: plain.windows.map((_, i) => ((c.layer_types?.[i] ?? (i % 2 === 0 ? 'sliding_attention' : 'full_attention')) === 'sliding_attention' ? w : null)),
      };
    }
    default:
      throw unsupportedModelType((c as { model_type: unknown }).model_type, '');
  }
}
