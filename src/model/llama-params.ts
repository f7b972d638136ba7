/**
 * The parameter names and shapes of Hugging Face's LlamaForCausalLM for a given config.
 * Linear weights are stored [out_features, in_features] as in torch.nn.Linear, so y = x W^T.
 * Both the model and the checkpoint loader validate against this one table.
 */
import { GrpoError } from '../shared/errors.js';
import type { LlamaConfig, NamedHostTensors } from './types.js';

export function headDim(c: LlamaConfig): number {
  return c.head_dim ?? c.hidden_size / c.num_attention_heads;
}

/** Expected parameter shapes by HF name, in a stable order (embeddings, layers, norm, head). */
export function llamaParamShapes(c: LlamaConfig): Map<string, number[]> {
  const d = c.hidden_size;
  const hd = headDim(c);
  const qOut = c.num_attention_heads * hd;
  const kvOut = c.num_key_value_heads * hd;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [c.vocab_size, d]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [d]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [qOut, d]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [kvOut, d]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [kvOut, d]);
    shapes.set(`${p}.self_attn.o_proj.weight`, [d, qOut]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [d]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [c.intermediate_size, d]);
    shapes.set(`${p}.mlp.up_proj.weight`, [c.intermediate_size, d]);
    shapes.set(`${p}.mlp.down_proj.weight`, [d, c.intermediate_size]);
  }
  shapes.set('model.norm.weight', [d]);
  if (!c.tie_word_embeddings) shapes.set('lm_head.weight', [c.vocab_size, d]);
  return shapes;
}

/**
 * Checks that `weights` has exactly the parameters of `config` with the right shapes.
 * A tied checkpoint that also carries `lm_head.weight` (some exporters write it) is accepted.
 * Throws GRPO_ERR_CHECKPOINT_MISMATCH naming the first problem.
 */
export function validateLlamaWeights(config: LlamaConfig, weights: NamedHostTensors): void {
  const expected = llamaParamShapes(config);
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) {
      throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `missing parameter ${name} (expected shape [${shape}])`);
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
      throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `unexpected parameter ${name} for this config`);
    }
  }
}
