/**
 * The general grammar API (src/tasks/grammar.ts, grammar-batch.ts): user-written char and
 * token machines, DFAs, the vocabulary trie for multi-character tokens, per-row state, and a user
 * task module with its own grammar (tests/fixtures/tasks/parity-grammar-task.js, which imports
 * the compiled dist/: build first, `npx tsc -p .`).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { CharTokenizer } from '../../src/model/char-tokenizer.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { Tokenizer } from '../../src/model/types.js';
import { createTask, decodeCompletion, loadTask, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import {
  dfaMachine,
  expandCharClass,
  fixedLengthMachine,
  grammarHook,
  machineAccepts,
  type CharMachine,
  type TokenMachine,
} from '../../src/tasks/grammar.js';
import { batchGrammar, grammarViolation } from '../../src/tasks/grammar-batch.js';
import type { Task } from '../../src/tasks/types.js';

const PARITY = 'tests/fixtures/tasks/parity-grammar-task.js';

/** A tokenizer with multi-character tokens: pad, bos, eos, then "a" "b" "ab" "ba" "abc" "c". */
function multiCharTokenizer(): Tokenizer {
  const texts = ['', '', '', 'a', 'b', 'ab', 'ba', 'abc', 'c'];
  return {
    kind: 'hf',
    vocabSize: texts.length,
    bosId: 1,
    eosId: 2,
    padId: 0,
    encode: () => {
      throw new Error('not used');
    },
    decode: (ids) => ids.map((i) => texts[i]).join(''),
    toJSON: () => ({}),
  };
}

const sorted = (x: Int32Array | number[] | null): number[] | null => (x === null ? null : [...x].sort((a, b) => a - b));

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('a user-written machine', () => {
  it('makes every sample of a random model a word of the machine, through a user task module', async () => {
    const task = await loadTask(PARITY, { seed: 1 });
    const tokenizer = tokenizerForTask(task);
    const model = LlamaModel.create(
      presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48, max_position_embeddings: 32, initializer_range: 0.6 }),
      4,
    );
    try {
      const prompts = Array.from({ length: 48 }, (_, i) => task.example('train', i).prompt);
      const r = await sample(model, prompts.map((p) => promptIds(tokenizer, p)), {
        maxNewTokens: task.maxCompletionTokens,
        temperature: 1.5,
        topK: 0,
        topP: 1,
        stopTokens: [tokenizer.eosId],
        seed: 3,
        allowedTokens: batchGrammar(tokenizer, prompts.map((prompt) => ({ task, prompt }))),
      });
      const texts = r.tokens.map((ids) => decodeCompletion(tokenizer, ids));
      for (const t of texts) expect(['even', 'odd']).toContain(t);
      expect(new Set(texts).size).toBe(2); // sampled, not forced down one path
      expect(r.finishReason.every((f) => f === 'stop')).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('walks multi-character tokens through the machine and keeps per-row state', () => {
    const tok = multiCharTokenizer();
    const ab = dfaMachine({ start: '0', accept: ['2'], transitions: { '0': { a: '1' }, '1': { b: '2' } } });
    const hook = grammarHook(ab, tok);
    // "a" and "ab" can start the word; "abc" overruns it, "ba" does not start it
    expect(hook([[], [3], [5]], [0, 1, 2]).map(sorted)).toEqual([[3, 5], [4], [2]]);
    // a row that restarts (a new batch in the same hook) is replayed from the start
    expect(hook([[]], [1]).map(sorted)).toEqual([[3, 5]]);
    expect(() => hook([[6]], [0])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_VIOLATION' }));
    expect(() => hook([[5, 2, 3]], [0])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_VIOLATION' }));
    expect(() => hook([[]], [0, 1])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_INPUT' }));
  });

  it('supports machines over token ids, with EOS only where the machine accepts', () => {
    const tok = multiCharTokenizer();
    // exactly two tokens, each an even id
    const twoEven: TokenMachine<number> = {
      unit: 'token',
      start: () => 0,
      allowed: (n) => (n < 2 ? [4, 6, 8] : []),
      step: (n) => n + 1,
      accepts: (n) => n === 2,
    };
    const hook = grammarHook(twoEven, tok);
    expect(hook([[], [4], [4, 8]], [0, 1, 2]).map(sorted)).toEqual([[4, 6, 8], [4, 6, 8], [2]]);
    expect(() => hook([[3]], [3])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_VIOLATION' }));
    // null = any token; without accepts() every prefix may end
    const any: TokenMachine<null> = { unit: 'token', start: () => null, allowed: () => null, step: () => null };
    expect(grammarHook(any, tok)([[7]], [0])).toEqual([null]);
  });

  it('lets a char machine hold any state a user likes (here: balanced parentheses up to depth 2)', () => {
    const parens: CharMachine<number> = {
      start: () => 0,
      allowed: (depth) => (depth === 0 ? '(x' : depth < 2 ? '()x' : ')x'),
      step: (depth, c) => (c === '(' ? depth + 1 : c === ')' ? depth - 1 : depth),
      accepts: (depth) => depth === 0,
    };
    for (const ok of ['', 'x', '(x)', '(()x)', '()()']) expect(machineAccepts(parens, ok), ok).toBe(true);
    for (const bad of ['(', '((()))', ')(', 'y']) expect(machineAccepts(parens, bad), bad).toBe(false);
  });
});

describe('dfaMachine', () => {
  it('reads character classes with ranges and accepts exactly its language', () => {
    expect(expandCharClass('a-c_-')).toEqual(['a', 'b', 'c', '_', '-']);
    const int = dfaMachine({ start: 's', accept: ['d'], transitions: { s: { '-': 'm', '0-9': 'd' }, m: { '0-9': 'd' }, d: { '0-9': 'd' } } });
    for (const ok of ['0', '-12', '987']) expect(machineAccepts(int, ok), ok).toBe(true);
    for (const bad of ['', '-', '1-2', '+1', 'a']) expect(machineAccepts(int, bad), bad).toBe(false);
    const three = fixedLengthMachine('a-z', 3);
    expect(['abc', 'ab', 'abcd', 'ab1'].map((t) => machineAccepts(three, t))).toEqual([true, false, false, false]);
  });

  it('rejects specs that are not DFAs', () => {
    const bad = [
      { start: 's', accept: [], transitions: { s: { 'z-a': 's' } } }, // range runs backwards
      { start: 's', accept: ['t'], transitions: { s: { 'a-c': 's', b: 't' } } }, // "b" goes two ways
      { start: 's', accept: [], transitions: { s: { a: 'nowhere' } } }, // unknown state
    ];
    for (const spec of bad) expect(() => dfaMachine(spec), JSON.stringify(spec)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_SPEC' }));
    expect(() => fixedLengthMachine('a', -1)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_SPEC' }));
  });
});

describe('batchGrammar and grammarViolation', () => {
  it('gives each row the grammar of its own task, and none to rows of tasks without one', async () => {
    const parity = await loadTask(PARITY, { seed: 1 });
    const other = await loadTask(PARITY, { seed: 2 }); // another Task object: a hook of its own
    const plain: Task = createTask('arithmetic', { seed: 1 });
    const tok = tokenizerForTask(parity);
    const [e, o] = tok.encode('eo');
    const hook = batchGrammar(tok, [
      { task: parity, prompt: '000001?' },
      { task: plain, prompt: '1+2=' },
      { task: other, prompt: '000011?' },
      { task: parity, prompt: '000111?' },
    ])!;
    const eo = sorted([e, o]);
    expect(hook([[], [], [], [o]], [0, 1, 2, 3]).map(sorted)).toEqual([eo, null, eo, [tok.encode('d')[0]]]);
    // live rows are a subset once some finish; each task's hook still sees its own row numbers
    expect(hook([[o], [e]], [3, 2]).map(sorted)).toEqual([[tok.encode('d')[0]], [tok.encode('v')[0]]]);
    expect(batchGrammar(tok, [{ task: plain, prompt: '1+2=' }])).toBeUndefined();
  });

  it('says why a token sequence breaks the grammar', async () => {
    const parity = await loadTask(PARITY, { seed: 1 });
    const tok = tokenizerForTask(parity);
    const ids = (text: string, eos = true) => [...tok.encode(text), ...(eos ? [tok.eosId] : [])];
    expect(grammarViolation(parity, tok, '000001?', ids('odd'))).toBeNull();
    expect(grammarViolation(parity, tok, '000001?', ids('ev', false))).toBeNull();
    expect(grammarViolation(parity, tok, '000001?', ids('ev'))).toMatch(/EOS/);
    expect(grammarViolation(parity, tok, '000001?', ids('oddd'))).toMatch(/"d"\) at completion position 3 is not allowed/);
    expect(grammarViolation(parity, tok, '000001?', [...ids('odd'), tok.eosId])).toMatch(/followed by more tokens/);
    expect(grammarViolation(createTask('arithmetic', { seed: 1 }), CharTokenizer.fromAlphabet('0123456789+-*/()='), '1+2=', [5, 5])).toBeNull();
  });
});
