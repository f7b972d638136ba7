/**
 * The parameter names and shapes of Hugging Face's *ForCausalLM for a given config (Llama,
 * Qwen2, Qwen3, Gemma2: the same layout with per-family extras, see architecture.ts).
 * Linear weights are stored [out_features, in_features] as in torch.nn.Linear, so y = x W^T.
 * Both the model and the checkpoint loader validate against this one table.
 */
import { GrpoError } from '../shared/errors.js';
import { archOf, headDim } from './architecture.js';
import type { ModelConfig, NamedHostTensors } from './types.js';

export { headDim } from './architecture.js';

/** Expected parameter shapes by HF name, in a stable order (embeddings, layers, norm, head). */
export function llamaParamShapes(c: ModelConfig): Map<string, number[]> {
  const a = archOf(c);
  const d = c.hidden_size;
  const hd = headDim(c);
  const I = c.intermediate_size;
  const qOut = c.num_attention_heads * hd;
  const kvOut = c.num_key_value_heads * hd;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [c.vocab_size, d]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    const linear = (name: string, out: number, inp: number, bias: boolean): void => {
      shapes.set(`${p}.${name}.weight`, [out, inp]);
      if (bias) shapes.set(`${p}.${name}.bias`, [out]);
    };
    shapes.set(`${p}.input_layernorm.weight`, [d]);
    linear('self_attn.q_proj', qOut, d, a.qkvBias);
    linear('self_attn.k_proj', kvOut, d, a.qkvBias);
    linear('self_attn.v_proj', kvOut, d, a.qkvBias);
    linear('self_attn.o_proj', d, qOut, a.oBias);
    if (a.qkNorm) {
      shapes.set(`${p}.self_attn.q_norm.weight`, [hd]);
      shapes.set(`${p}.self_attn.k_norm.weight`, [hd]);
    }
    shapes.set(`${p}.post_attention_layernorm.weight`, [d]);
    if (a.sandwich) {
      shapes.set(`${p}.pre_feedforward_layernorm.weight`, [d]);
      shapes.set(`${p}.post_feedforward_layernorm.weight`, [d]);
    }
    linear('mlp.gate_proj', I, d, a.mlpBias);
    linear('mlp.up_proj', I, d, a.mlpBias);
    linear('mlp.down_proj', d, I, a.mlpBias);
  }
  shapes.set('model.norm.weight', [d]);
  if (!c.tie_word_embeddings) shapes.set('lm_head.weight', [c.vocab_size, d]);
  return shapes;
}

/** The shape-table name that is less tied to Llama; same function. */
export const modelParamShapes = llamaParamShapes;

/** True for the parameters RMSNorm multiplies by (they start at 1, or at 0 with Gemma's 1 + w). */
export function isNormWeight(name: string): boolean {
  return name.endsWith('norm.weight');
}

/**
 * Checks that `weights` has exactly the parameters of `config` with the right shapes.
 * A tied checkpoint that also carries `lm_head.weight` (some exporters write it) is accepted.
 * Throws GRPO_ERR_CHECKPOINT_MISMATCH naming the first problem: the parameter, the shape the
 * config expects and the shape found.
 */
export function validateLlamaWeights(config: ModelConfig, weights: NamedHostTensors): void {
  const expected = llamaParamShapes(config);
  const family = `${config.model_type} config`;
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) {
      throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `missing parameter ${name} (the ${family} expects shape [${shape}])`);
    }
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new GrpoError(
        'GRPO_ERR_CHECKPOINT_MISMATCH',
        `parameter ${name} has shape [${t.shape}], config expects [${shape}]`,
      );
    }
    const size = shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) {
      throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `parameter ${name} holds ${t.data.length} values, shape needs ${size}`);
    }
  }
  for (const name of weights.keys()) {
    if (!expected.has(name) && !(name === 'lm_head.weight' && config.tie_word_embeddings)) {
      throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `unexpected parameter ${name} for this ${family}`);
    }
  }
}

/** The same check under a name that is less tied to Llama. */
export const validateModelWeights = validateLlamaWeights;
