import { describe, expect, it } from 'vitest';
import { GrpoError } from '../src/shared/errors.js';
import { expectCode, tinyLlamaConfig } from './helpers.js';

const coded = () => {
  throw new GrpoError('GRPO_ERR_CONFIG', 'bad key x');
};

describe('test helpers', () => {
  it('expectCode passes on the code and fragment, sync and async', async () => {
    expectCode(coded, 'GRPO_ERR_CONFIG', 'key x');
    expectCode(coded, 'GRPO_ERR_CONFIG', /bad key/);
    await expectCode(Promise.reject(new GrpoError('GRPO_ERR_CONFIG', 'late')), 'GRPO_ERR_CONFIG', 'late');
    await expectCode(async () => coded(), 'GRPO_ERR_CONFIG');
  });

  it('expectCode fails when nothing is thrown, on another code, a plain Error or a missing fragment', async () => {
    expect(() => expectCode(() => 1, 'GRPO_ERR_CONFIG')).toThrow(/nothing was thrown/);
    expect(() => expectCode(coded, 'GRPO_ERR_NAN_LOSS')).toThrow();
    expect(() => expectCode(() => { throw new Error('plain'); }, 'GRPO_ERR_CONFIG')).toThrow();
    expect(() => expectCode(coded, 'GRPO_ERR_CONFIG', 'other words')).toThrow();
    await expect(expectCode(Promise.resolve(1), 'GRPO_ERR_CONFIG')).rejects.toThrow(/nothing was thrown/);
    await expect(expectCode(async () => 1, 'GRPO_ERR_CONFIG')).rejects.toThrow(/nothing was thrown/);
  });

  it('tinyLlamaConfig gives the two tiny bodies and lets overrides win', () => {
    const tokens = { vocabSize: 20, bosId: 1, eosId: 2, padId: 0 };
    expect(tinyLlamaConfig(tokens)).toMatchObject({ hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, vocab_size: 20 });
    expect(tinyLlamaConfig(tokens, { initializer_range: 0.3 }, 'gqa')).toMatchObject({
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      initializer_range: 0.3,
    });
  });
});
