import { describe, expect, it } from 'vitest';
import { ADJECTIVES, KEYWORDS_ALPHABET, NOUNS, VERBS, createKeywords, keywordsTask } from '../../src/tasks/keywords.js';
import { createTask, taskNames } from '../../src/tasks/index.js';
import type { Split } from '../../src/tasks/types.js';

const metaOf = (m: unknown) => m as { keywords: string[] };

describe('keywords task', () => {
  it('is registered and generates the same examples for the same seed', () => {
    expect(taskNames()).toContain('keywords');
    const a = createTask('keywords', { seed: 7 });
    const b = createTask('keywords', { seed: 7 });
    const c = createTask('keywords', { seed: 8 });
    const list = (t: typeof a, split: Split) => Array.from({ length: 50 }, (_, i) => t.example(split, i));
    expect(list(a, 'train')).toEqual(list(b, 'train'));
    expect(list(a, 'test')).toEqual(list(b, 'test'));
    expect(list(a, 'train')).not.toEqual(list(c, 'train'));
  });

  it('writes prompts of distinct nouns and SFT targets that use them in the template', () => {
    const task = createKeywords({ seed: 1, options: { keywords: 3 } });
    for (let i = 0; i < 200; i++) {
      const ex = task.example('train', i);
      const { keywords } = metaOf(ex.meta);
      expect(keywords).toHaveLength(3);
      expect(new Set(keywords).size).toBe(3);
      for (const k of keywords) expect(NOUNS).toContain(k);
      expect(ex.prompt).toBe(`${keywords.join(' ')}:`);
      const w = ex.target!.slice(0, -1).split(' ');
      expect(w).toEqual(['the', w[1], keywords[0], w[3], 'the', keywords[1], 'and', 'the', keywords[2]]);
      expect(ADJECTIVES).toContain(w[1]);
      expect(VERBS).toContain(w[3]);
      for (const ch of ex.prompt + ex.target!) expect(KEYWORDS_ALPHABET).toContain(ch);
      expect(ex.target!.length + 1).toBeLessThanOrEqual(task.maxCompletionTokens);
      expect(ex.prompt.length).toBeLessThanOrEqual(task.maxPromptChars);
    }
  });

  it('never shows a held-out prompt in training', () => {
    const task = createTask('keywords', { seed: 3 });
    const train = new Set(Array.from({ length: 2000 }, (_, i) => task.example('train', i).prompt));
    const test = new Set(Array.from({ length: 300 }, (_, i) => task.example('test', i).prompt));
    expect(test.size).toBeGreaterThan(20);
    for (const p of test) expect(train.has(p)).toBe(false);
  });

  it('gives the SFT target the full score of every component, and is correct on it', async () => {
    const task = createTask('keywords', { seed: 5 });
    expect(task.rewards.map((r) => [r.name, r.weight, r.group !== undefined])).toEqual([
      ['keywords', 1, false],
      ['length', 0.2, false],
      ['repetition', 0.2, false],
      ['format', 0.2, false],
      ['diversity', 0.2, true],
    ]);
    for (let i = 0; i < 20; i++) {
      const ex = task.example('test', i);
      for (const r of task.rewards) expect(await r.fn(ex.prompt, ex.target!, ex.meta), r.name).toBe(1);
      expect(task.isCorrect(ex.prompt, ex.target!, ex.meta)).toBe(true);
    }
  });

  it('scores partial answers by component and accepts only complete, well-formed ones', async () => {
    const task = createTask('keywords', { seed: 5 });
    const ex = task.example('train', 0);
    const [k1, k2] = metaOf(ex.meta).keywords;
    const byName = Object.fromEntries(task.rewards.map((r) => [r.name, r]));
    const score = async (c: string) => Object.fromEntries(await Promise.all(Object.entries(byName).map(async ([n, r]) => [n, await r.fn(ex.prompt, c, ex.meta)])));
    expect(await score(`the ${k1} sleeps.`)).toMatchObject({ keywords: 0.5, length: 0.5, format: 1, repetition: 1 });
    expect(await score(`The ${k1} sees the ${k2}`)).toMatchObject({ keywords: 1, format: 0 });
    expect(task.isCorrect(ex.prompt, `the ${k2} and the ${k1}.`, ex.meta)).toBe(true);
    expect(task.isCorrect(ex.prompt, `the ${k2} and the ${k1}`, ex.meta)).toBe(false);
    expect(task.isCorrect(ex.prompt, `the ${k2}.`, ex.meta)).toBe(false);
    const diversity = await byName.diversity.group!(ex.prompt, ['a b', 'a b', 'c'], ex.meta);
    expect(diversity).toEqual([0.5, 0.5, 1]);
  });

  it('takes its knobs: target_words, a custom format, 1 keyword', async () => {
    const task = createKeywords({ seed: 2, options: { keywords: 1, target_words: 3, format: '^[a-z ]+!$' } });
    const ex = task.example('train', 4);
    expect(metaOf(ex.meta).keywords).toHaveLength(1);
    const byName = Object.fromEntries(task.rewards.map((r) => [r.name, r]));
    expect(await byName.length.fn(ex.prompt, 'one two three', ex.meta)).toBe(1);
    expect(await byName.format.fn(ex.prompt, 'wow!', ex.meta)).toBe(1);
    expect(task.options).toEqual({ keywords: 1, target_words: 3, format: '^[a-z ]+!$', test_fraction: 0.1 });
  });

  it('rejects unknown knobs, bad values and a bad regular expression with GRPO_ERR_TASK_OPTIONS', () => {
    for (const options of [{ keyword: 2 }, { keywords: 4 }, { target_words: 0 }, { format: '([a-z' }]) {
      expect(() => keywordsTask.create({ seed: 1, options }), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' }));
    }
    expect(() => createTask('keywords', { seed: 1 }).rewards[0].fn('p', 'c', { nope: 1 })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
  });
});
