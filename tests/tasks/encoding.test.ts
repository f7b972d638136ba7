import { describe, expect, it } from 'vitest';
import { completionIds, createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';

describe('task encoding', () => {
  it('lays out [BOS] prompt | completion [EOS] and reads completions up to EOS', () => {
    const task = createTask('arithmetic', { seed: 1 });
    const tok = tokenizerForTask(task);
    expect([tok.padId, tok.bosId, tok.eosId]).toEqual([0, 1, 2]);
    const p = promptIds(tok, '(4-2)/-6=');
    expect(p[0]).toBe(tok.bosId);
    expect(tok.decode(p)).toBe('(4-2)/-6=');
    const c = completionIds(tok, '-1/3');
    expect(c.at(-1)).toBe(tok.eosId);
    expect(completionIds(tok, '-1/3', { eos: false })).toEqual(c.slice(0, -1));
    expect(decodeCompletion(tok, [...c, ...tok.encode('99')])).toBe('-1/3');
    expect(decodeCompletion(tok, tok.encode('12'))).toBe('12');
  });

  it('needs an alphabet for a character tokenizer', () => {
    const task = createTask('arithmetic', { seed: 1 });
    expect(() => tokenizerForTask({ ...task, alphabet: null })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TOKENIZER_CONFIG' }));
  });
});

describe('task encoding with a Hugging Face tokenizer', () => {
  it('does not repeat a BOS that a chat template already wrote, and decodes padded-vocabulary ids to nothing', async () => {
    const { loadTokenizer } = await import('../../src/model/tokenizer.js');
    const tok = await loadTokenizer(new URL('../fixtures/hf-tiny-llama', import.meta.url).pathname);
    expect(tok.bosId).toBe(1);
    expect(promptIds(tok, 'the cat')[0]).toBe(1);
    expect(promptIds(tok, '<s>the cat')).toEqual(promptIds(tok, 'the cat')); // "<s>" is BOS: once
    const cat = tok.encode('the cat');
    // the fixture's model has 64 embedding rows for 56 tokens: ids 56-63 are padding
    expect(decodeCompletion(tok, [...cat, 60, tok.eosId, 5])).toBe(decodeCompletion(tok, cat));
    expect(() => decodeCompletion(tok, [-1])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TOKEN_OUT_OF_RANGE' }));
  });

  it("adds BOS only when the tokenizer's post-processor does (Qwen2 names a BOS but never adds it)", async () => {
    const { loadTokenizer } = await import('../../src/model/tokenizer.js');
    const { readFileSync } = await import('node:fs');
    const json = JSON.parse(readFileSync(new URL('../fixtures/hf-tiny-llama/tokenizer.json', import.meta.url), 'utf8'));
    const withBos = await loadTokenizer(json, { ids: { bosId: 1, eosId: 2 } });
    expect(withBos.addsBos).toBe(true);
    expect(promptIds(withBos, 'the cat')[0]).toBe(1);
    const qwenLike = await loadTokenizer({ ...json, post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false } }, { ids: { bosId: 1, eosId: 2 } });
    expect(qwenLike.bosId).toBe(1);
    expect(qwenLike.addsBos).toBe(false);
    expect(promptIds(qwenLike, 'the cat')).toEqual(qwenLike.encode('the cat'));
  });
});
