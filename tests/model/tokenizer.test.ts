import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfJs } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { CharTokenizer, HfTokenizer, loadTokenizer } from '../../src/model/tokenizer.js';
import { expectCode } from '../helpers.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/hf-tiny-llama');
const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as { encode: { text: string; ids: number[] }[] };
const bpeJson = (): Record<string, unknown> => JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8'));

const ALPHABET = '0123456789+-*/()= .\n';

describe('CharTokenizer', () => {
  it('puts the specials first and maps each code point to one id', () => {
    const tok = CharTokenizer.fromAlphabet(ALPHABET);
    expect(tok.kind).toBe('char');
    expect([tok.padId, tok.bosId, tok.eosId]).toEqual([0, 1, 2]);
    expect(tok.vocabSize).toBe(3 + ALPHABET.length);
    expect(tok.encode('12+3')).toEqual([4, 5, 13, 6]);
    expect(tok.decode(tok.encode('(1 + 2) * 3 = 9\n'))).toBe('(1 + 2) * 3 = 9\n');
  });

  it('drops special tokens when decoding and rejects ids outside the vocabulary', async () => {
    const tok = CharTokenizer.fromAlphabet('ab');
    expect(tok.decode([tok.bosId!, 3, 4, tok.eosId, tok.padId])).toBe('ab');
    await expectCode(() => tok.decode([5]), 'GRPO_ERR_TOKEN_OUT_OF_RANGE', '[0, 5)');
    await expectCode(() => tok.decode([-1]), 'GRPO_ERR_TOKEN_OUT_OF_RANGE');
  });

  it('reads special-token text in the input as plain characters', () => {
    const tok = CharTokenizer.fromAlphabet('<>eos');
    expect(tok.encode('<eos>')).toHaveLength(5);
  });

  it('rejects unknown characters unless an <unk> special exists', async () => {
    await expectCode(() => CharTokenizer.fromAlphabet('ab').encode('abc'), 'GRPO_ERR_TOKENIZER_UNKNOWN_CHAR', '"c"');
    const withUnk = CharTokenizer.fromAlphabet('ab', { specials: ['<pad>', '<eos>', '<unk>'] });
    expect(withUnk.encode('acb')).toEqual([3, withUnk.unkId, 4]);
    expect(withUnk.bosId).toBeNull();
  });

  it('handles characters outside the basic plane as single tokens', () => {
    const tok = CharTokenizer.fromAlphabet('a😀é');
    expect(tok.encode('😀aé')).toEqual([4, 3, 5]);
    expect(tok.decode([4, 3, 5])).toBe('😀aé');
  });

  it('validates the alphabet and the specials', async () => {
    await expectCode(() => CharTokenizer.fromAlphabet(''), 'GRPO_ERR_TOKENIZER_CONFIG', 'empty');
    await expectCode(() => CharTokenizer.fromAlphabet('abca'), 'GRPO_ERR_TOKENIZER_CONFIG', '"a"');
    await expectCode(() => CharTokenizer.fromAlphabet('ab', { specials: ['<pad>'] }), 'GRPO_ERR_TOKENIZER_CONFIG', '<eos>');
    await expectCode(() => CharTokenizer.fromAlphabet('ab', { specials: ['<eos>', '<eos>'] }), 'GRPO_ERR_TOKENIZER_CONFIG', 'twice');
    await expectCode(() => CharTokenizer.fromAlphabet('ab', { specials: ['<eos>', 'x'] }), 'GRPO_ERR_TOKENIZER_CONFIG', 'two characters');
    const noPad = CharTokenizer.fromAlphabet('ab', { specials: ['<eos>'] });
    expect(noPad.padId).toBe(noPad.eosId);
  });

  it('round-trips through tokenizer.json and loadTokenizer back to a CharTokenizer', async () => {
    const tok = CharTokenizer.fromAlphabet(ALPHABET, { specials: ['<pad>', '<bos>', '<eos>', '<unk>'] });
    const json = JSON.parse(JSON.stringify(tok.toJSON()));
    const back = await loadTokenizer(json);
    expect(back).toBeInstanceOf(CharTokenizer);
    expect([back.vocabSize, back.bosId, back.eosId, back.padId]).toEqual([tok.vocabSize, tok.bosId, tok.eosId, tok.padId]);
    expect(back.encode('12*(3-4)=-12\n')).toEqual(tok.encode('12*(3-4)=-12\n'));
    expect(back.toJSON()).toEqual(json);
  });

  it('writes a tokenizer.json that Hugging Face tokenizers (tokenizers.js) opens with the same ids', () => {
    const tok = CharTokenizer.fromAlphabet(ALPHABET);
    const hf = new HfJs(JSON.parse(JSON.stringify(tok.toJSON())), {});
    const text = '(12 + 3) * 4 = 60\n7 / 2 = 3.5';
    const hfIds = hf.encode(text, { add_special_tokens: false }).ids as number[];
    expect(hfIds).toEqual(tok.encode(text));
    expect(hf.decode(hfIds, { skip_special_tokens: true, clean_up_tokenization_spaces: false })).toBe(text);
    expect(hf.token_to_id('<eos>')).toBe(tok.eosId);
    // HF decoding of a special keeps its text unless asked to skip it
    expect(hf.decode([tok.bosId!, ...hfIds.slice(0, 2)], { skip_special_tokens: false })).toBe('<bos>(1');
  });

  it('is not detected in a JSON that only looks similar', async () => {
    const json = CharTokenizer.fromAlphabet('ab').toJSON() as Record<string, unknown>;
    const multiChar = structuredClone(json) as { model: { vocab: Record<string, number> } };
    multiChar.model.vocab = { '<pad>': 0, '<bos>': 1, '<eos>': 2, ab: 3 };
    expect(CharTokenizer.isCharTokenizerJSON(multiChar)).toBe(false);
    expect(CharTokenizer.isCharTokenizerJSON({ ...json, decoder: null })).toBe(false);
    expect(CharTokenizer.isCharTokenizerJSON(bpeJson())).toBe(false);
    await expectCode(() => CharTokenizer.fromJSON({ ...json, decoder: null }), 'GRPO_ERR_TOKENIZER_CONFIG');
    // a WordLevel tokenizer that is not ours still loads, through tokenizers.js
    const other = await loadTokenizer({ ...json, decoder: null });
    expect(other).toBeInstanceOf(HfTokenizer);
    expect(other.encode('ba')).toEqual([4, 3]);
  });
});

describe('HfTokenizer (tokenizers.js)', () => {
  it('encodes the fixture BPE texts to the ids of the reference BPE and decodes them back', async () => {
    const tok = await loadTokenizer(join(FIXTURE, 'tokenizer.json'));
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect(tok.kind).toBe('hf');
    for (const { text, ids } of expected.encode) {
      expect(tok.encode(text)).toEqual(ids);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.decode([])).toBe('');
  });

  it('reads bos/eos from tokenizer_config.json beside the file and falls back to eos for pad', async () => {
    const tok = await loadTokenizer(FIXTURE); // a directory works too
    expect([tok.bosId, tok.eosId, tok.padId, tok.vocabSize]).toEqual([1, 2, 2, 56]);
    expect(tok.decode([1, ...expected.encode[0].ids, 2])).toBe(expected.encode[0].text);
  });

  it('finds well-known special names without a tokenizer_config.json, and explicit ids win', async () => {
    const tok = await loadTokenizer(bpeJson());
    expect([tok.bosId, tok.eosId]).toEqual([1, 2]);
    const explicit = await loadTokenizer(bpeJson(), { ids: { bosId: null, eosId: 0, padId: 1 } });
    expect([explicit.bosId, explicit.eosId, explicit.padId]).toEqual([1, 0, 1]);
    const fromConfig = HfTokenizer.fromJSON(bpeJson(), { tokenizerConfig: { eos_token: { content: '<unk>' }, pad_token: '<s>' } });
    expect([fromConfig.eosId, fromConfig.padId]).toEqual([0, 1]);
  });

  it('keeps the original tokenizer.json for saving', async () => {
    const tok = await loadTokenizer(bpeJson());
    expect(tok.toJSON()).toEqual(bpeJson());
  });

  it('fails with coded errors on missing files, broken JSON and unknown special tokens', async () => {
    await expectCode(loadTokenizer('/nonexistent/tokenizer.json'), 'GRPO_ERR_TOKENIZER_NOT_FOUND');
    const dir = await mkdtemp(join(tmpdir(), 'tok-'));
    try {
      await writeFile(join(dir, 'tokenizer.json'), '{ nope');
      await expectCode(loadTokenizer(dir), 'GRPO_ERR_BAD_TOKENIZER', 'not valid JSON');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await expectCode(loadTokenizer({ ...bpeJson(), model: { type: 'Nope' } }), 'GRPO_ERR_BAD_TOKENIZER', 'tokenizers.js');
    await expectCode(loadTokenizer([1, 2]), 'GRPO_ERR_BAD_TOKENIZER');
    const noSpecials = { ...bpeJson(), added_tokens: [] };
    await expectCode(loadTokenizer(noSpecials), 'GRPO_ERR_TOKENIZER_CONFIG', 'end-of-sequence');
    await expectCode(
      async () => HfTokenizer.fromJSON(bpeJson(), { tokenizerConfig: { eos_token: '<nope>' } }),
      'GRPO_ERR_TOKENIZER_CONFIG',
      '<nope>',
    );
    await expectCode(loadTokenizer(bpeJson(), { ids: { eosId: 500 } }), 'GRPO_ERR_TOKENIZER_CONFIG', '500');
    const tok = await loadTokenizer(bpeJson());
    await expectCode(() => tok.decode([56]), 'GRPO_ERR_TOKEN_OUT_OF_RANGE');
  });
});
