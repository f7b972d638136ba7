import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../../src/engine/tf.js';
import { CharTokenizer } from '../../../src/model/char-tokenizer.js';
import { LlamaModel } from '../../../src/model/llama.js';
import { Rng } from '../../../src/shared/rng.js';
import {
  FILL_IN_ALPHABET,
  LETTERS,
  MASK_CHAR,
  MAX_SENTENCE_CHARS,
  corpusSentence,
  faithfulness,
  fillingMachine,
  isFillingOf,
  maskText,
} from '../../../src/tasks/fill-in/corpus.js';
import { machineAccepts } from '../../../src/tasks/grammar.js';
import { createFillIn, isFilling, type FillInMeta } from '../../../src/tasks/fill-in/fill-in.js';
import { createTask, resolveRewards, taskNames } from '../../../src/tasks/index.js';
import { peakedModelConfig, sampleTask } from '../helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'fill-in-test-'));
beforeAll(async () => {
  await tf.setBackend('cpu');
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const reward = (task: ReturnType<typeof createFillIn>, name: string) => task.rewards.find((r) => r.name === name)!;

describe('fill-in corpus', () => {
  it('draws sentences of the grammar, never longer than MAX_SENTENCE_CHARS, and reaches that bound', () => {
    const rng = new Rng(3);
    let longest = 0;
    for (let i = 0; i < 5000; i++) {
      const s = corpusSentence(rng);
      expect(s).toMatch(/^the [a-z ]+\.$/);
      longest = Math.max(longest, s.length);
    }
    expect(longest).toBeLessThanOrEqual(MAX_SENTENCE_CHARS);
    expect(longest).toBeGreaterThan(MAX_SENTENCE_CHARS - 4); // the bound is tight, not a loose guess
  });

  it('masks letters only, round(rate * letters) of them within [1, max], and records them in order', () => {
    const text = 'the shy fox chases the old hen.'; // 25 letters
    const m = maskText(new Rng(1), text, 0.15, 10);
    expect(m.masked).toHaveLength(text.length);
    const positions = [...m.masked].flatMap((c, i) => (c === MASK_CHAR ? [i] : []));
    expect(positions).toHaveLength(4); // round(0.15 * 25)
    expect(positions.every((p) => LETTERS.includes(text[p]))).toBe(true);
    expect(m.answer).toBe(positions.map((p) => text[p]).join(''));
    expect(maskText(new Rng(1), text, 0.15, 2).answer).toHaveLength(2); // capped
    expect(maskText(new Rng(1), text, 0.001, 5).answer).toHaveLength(1); // at least one
  });

  it('accepts a filling only with the same length, the unmasked characters and a letter per mask', () => {
    expect(isFillingOf('the s_y fox.', 'the shy fox.')).toBe(true);
    expect(isFillingOf('the s_y fox.', 'the sky fox.')).toBe(true); // wrong, but a filling
    expect(isFillingOf('the s_y fox.', 'the shy fox')).toBe(false); // period dropped
    expect(isFillingOf('the s_y fox.', 'the shy box.')).toBe(false); // an unmasked letter changed
    expect(isFillingOf('the s_y fox.', 'the s y fox.')).toBe(false); // a space is not a letter
    expect(isFillingOf('the s_y fox.', 'the s_y fox.')).toBe(false);
  });

  it('measures faithfulness as 1 - edit distance / length, with masks matching any letter', () => {
    const masked = 'the s_y fox.'; // 12 characters
    expect(faithfulness(masked, 'the shy fox.')).toBe(1);
    expect(faithfulness(masked, 'the sky fox.')).toBe(1); // a wrong fill is still faithful
    expect(faithfulness(masked, 'the shy fox')).toBeCloseTo(1 - 1 / 12, 12); // one deletion
    expect(faithfulness(masked, 'the shy box.')).toBeCloseTo(1 - 1 / 12, 12); // one substitution
    expect(faithfulness(masked, 'the shy old fox.')).toBeCloseTo(1 - 4 / 12, 12); // four insertions
    expect(faithfulness(masked, 'the s y fox.')).toBeCloseTo(1 - 1 / 12, 12); // a space fills no mask
    expect(faithfulness(masked, '')).toBe(0);
    expect(faithfulness(masked, 'x'.repeat(40))).toBe(0); // floored
  });
});

describe('fill-in task', () => {
  const task = createFillIn({ seed: 11 });

  it('is registered and deterministic in its seed', () => {
    expect(taskNames()).toContain('fill-in');
    const again = createTask('fill-in', { seed: 11 });
    for (let i = 0; i < 20; i++) expect(again.example('train', i)).toEqual(task.example('train', i));
    const other = createFillIn({ seed: 12 });
    const differs = Array.from({ length: 20 }, (_, i) => other.example('train', i).prompt !== task.example('train', i).prompt);
    expect(differs.filter(Boolean).length).toBeGreaterThan(15);
  });

  it('builds prompt, target and meta consistently', () => {
    for (let i = 0; i < 200; i++) {
      const ex = task.example(i % 2 ? 'train' : 'test', i);
      const meta = ex.meta as FillInMeta;
      expect(ex.prompt).toBe(`${ex.prompt.slice(0, -1)}=`);
      expect(ex.target).toBe(meta.text);
      expect(isFilling(ex.prompt, meta.text)).toBe(true);
      const masks = [...ex.prompt].filter((c) => c === MASK_CHAR).length;
      expect(masks).toBeGreaterThanOrEqual(1);
      expect(masks).toBeLessThanOrEqual(4);
      expect(meta.answer).toHaveLength(masks);
      expect(ex.prompt.length).toBeLessThanOrEqual(task.maxPromptChars);
      expect(meta.text.length + 1).toBeLessThanOrEqual(task.maxCompletionTokens);
      for (const c of ex.prompt + meta.text) expect(FILL_IN_ALPHABET).toContain(c);
    }
  });

  it('keeps the held-out split disjoint from train by prompt text', () => {
    const train = new Set(Array.from({ length: 3000 }, (_, i) => task.example('train', i).prompt));
    const test = Array.from({ length: 300 }, (_, i) => task.example('test', i).prompt);
    expect(test.filter((p) => train.has(p))).toEqual([]);
    expect(new Set(test).size).toBeGreaterThan(295); // a large problem space: few repeats
  });

  it('scores exact, format and correctness on the whole sentence', () => {
    const ex = task.example('test', 0);
    const { text } = ex.meta as FillInMeta;
    const wrong = [...text].map((c, i) => (ex.prompt[i] === MASK_CHAR ? (c === 'z' ? 'y' : 'z') : c)).join('');
    expect(task.isCorrect(ex.prompt, text, ex.meta)).toBe(true);
    expect(task.isCorrect(ex.prompt, wrong, ex.meta)).toBe(false);
    expect(reward(task, 'exact').fn(ex.prompt, text, ex.meta)).toBe(1);
    expect(reward(task, 'exact').fn(ex.prompt, wrong, ex.meta)).toBe(0);
    expect(reward(task, 'format').fn(ex.prompt, wrong, ex.meta)).toBe(1);
    expect(reward(task, 'format').fn(ex.prompt, text.slice(0, -1), ex.meta)).toBe(0);
    expect(reward(task, 'faithful').fn(ex.prompt, wrong, ex.meta)).toBe(1);
    expect(reward(task, 'faithful').fn(ex.prompt, `${text}.`, ex.meta)).toBeLessThan(1);
    expect(resolveRewards(task).map((r) => r.name)).toEqual(['judge']); // exact, format and faithful default to weight 0
  });

  it('fails with coded errors: unknown options, a missing or wrong judge, a judge reward without one', async () => {
    expect(() => createFillIn({ seed: 1, options: { masks: 3 } })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' }));
    expect(() => createFillIn({ seed: 1, options: { mask_rate: 0 } })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' }));
    expect(() => createFillIn({ seed: 1, options: { judge_checkpoint: join(scratch, 'none') } })).toThrow(
      expect.objectContaining({ code: 'GRPO_ERR_JUDGE_CHECKPOINT' }),
    );
    const sft = join(scratch, 'sft'); // a checkpoint directory of another phase
    mkdirSync(sft);
    writeFileSync(join(sft, 'config.json'), '{}');
    writeFileSync(join(sft, 'trainer_state.json'), JSON.stringify({ step: 1, policyVersion: 0, phase: 'sft' }));
    expect(() => createFillIn({ seed: 1, options: { judge_checkpoint: sft } })).toThrow(/not a judge checkpoint/);
    const ex = task.example('train', 0);
    await expect(Promise.resolve(reward(task, 'judge').fn(ex.prompt, ex.target!, ex.meta))).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_MISSING' });
  });
});

describe('fill-in grammar', () => {
  it('accepts exactly the fillings of the masked text', () => {
    const m = fillingMachine('the s_y f_x.');
    for (const ok of ['the shy fox.', 'the sly fax.', 'the sqy fzx.']) expect(machineAccepts(m, ok), ok).toBe(true);
    for (const bad of ['the s_y f_x.', 'the shy fox', 'the shy fox..', 'The shy fox.', 'the s y fox.', 'the shy wolf.', '']) {
      expect(machineAccepts(m, bad), bad).toBe(false);
    }
  });

  it('makes every sample of a random model a filling of its prompt; constrained: false samples freely', async () => {
    const tokenizer = CharTokenizer.fromAlphabet(FILL_IN_ALPHABET);
    const before = tf.memory().numTensors;
    const model = LlamaModel.create(peakedModelConfig(tokenizer, 128), 5);
    try {
      const draw = async (constrained: boolean) => {
        const task = createFillIn({ seed: 3, options: { constrained } });
        const problems = Array.from({ length: 16 }, (_, i) => task.example('train', i));
        const samples = await sampleTask(model, tokenizer, task, problems.map((p) => p.prompt), { seed: 7, temperature: 1.5 });
        return problems.map((p, i) => ({ prompt: p.prompt, text: samples[i].text, stop: samples[i].finishReason }));
      };
      const constrained = await draw(true);
      for (const c of constrained) {
        expect(c.stop, `${c.prompt}${c.text}`).toBe('stop');
        expect(isFilling(c.prompt, c.text), `${c.prompt}${c.text}`).toBe(true);
      }
      expect(new Set(constrained.map((c) => c.text)).size).toBe(constrained.length); // real sampling of each prompt's masks
      expect((await draw(false)).filter((c) => isFilling(c.prompt, c.text))).toHaveLength(0); // the random model alone writes no filling
      expect(createFillIn({ seed: 3, options: { constrained: false } }).grammar).toBeUndefined();
    } finally {
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
