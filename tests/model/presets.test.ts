import { describe, expect, it } from 'vitest';
import { isGrpoError } from '../../src/shared/errors.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { MODEL_SIZES, presetConfig, REFERENCE_CONFIG, type ModelSize } from '../../src/model/presets.js';
import type { LlamaConfig } from '../../src/model/types.js';

const TOKENS = { vocabSize: 64, bosId: 1, eosId: 2, padId: 0 };

function paramCount(c: LlamaConfig): number {
  let n = 0;
  for (const shape of llamaParamShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isGrpoError(err) ? err.code : `not a GrpoError: ${String(err)}`;
  }
  return undefined;
}

describe('presetConfig', () => {
  it('builds a valid, growing config for every size with the tokenizer special tokens', () => {
    const counts = MODEL_SIZES.map((size) => {
      const c = presetConfig(size, TOKENS);
      expect(c.model_type).toBe('llama');
      expect(c.architectures).toEqual(['LlamaForCausalLM']);
      expect([c.vocab_size, c.bos_token_id, c.eos_token_id, c.pad_token_id]).toEqual([64, 1, 2, 0]);
      expect(c.num_attention_heads % c.num_key_value_heads).toBe(0);
      return paramCount(c);
    });
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThan(2 * counts[i - 1]);
    expect(counts[0]).toBeGreaterThan(50_000); // "a few hundred thousand parameters up"
    expect(counts[0]).toBeLessThan(300_000);
  });

  it('applies overrides and validates the result', () => {
    const c = presetConfig('tiny', TOKENS, { max_position_embeddings: 1024, tie_word_embeddings: false });
    expect(c.max_position_embeddings).toBe(1024);
    expect(llamaParamShapes(c).has('lm_head.weight')).toBe(true);
    expect(codeOf(() => presetConfig('tiny', TOKENS, { num_key_value_heads: 3 }))).toBe('GRPO_ERR_MODEL_CONFIG');
    expect(codeOf(() => presetConfig('tiny', TOKENS, { head_dim: 7 }))).toBe('GRPO_ERR_MODEL_CONFIG');
    expect(codeOf(() => presetConfig('tiny', { ...TOKENS, eosId: 64 }))).toBe('GRPO_ERR_MODEL_CONFIG');
    expect(codeOf(() => presetConfig('huge' as ModelSize, TOKENS))).toBe('GRPO_ERR_MODEL_CONFIG');
  });
});

describe('REFERENCE_CONFIG', () => {
  it('is the benchmark model of issue 2 (about 0.8 M parameters)', () => {
    const c = REFERENCE_CONFIG;
    expect([c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers]).toEqual([64, 128, 352, 4]);
    expect([c.num_attention_heads, c.num_key_value_heads, c.tie_word_embeddings]).toEqual([4, 4, true]);
    expect(c.max_position_embeddings).toBeGreaterThanOrEqual(64);
    expect(paramCount(c)).toBe(64 * 128 + 4 * (2 * 128 + 4 * 128 * 128 + 3 * 128 * 352) + 128);
    expect(Object.isFrozen(c)).toBe(true);
  });
});
