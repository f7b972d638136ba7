import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/shared/rng.js';
import { createTask, resolveRewards, taskNames } from '../../../src/tasks/index.js';
import { mathAnswerMeta, r1Target } from '../../../src/tasks/math-answer/math-answer.js';
import { MATH_SAMPLE, mathSampleLines } from '../../../src/tasks/math-answer/word-problems.js';

const SAMPLE = fileURLToPath(new URL('../../../examples/data/math-sample.jsonl', import.meta.url));

describe('math-answer task', () => {
  const task = createTask('math-answer', { seed: 7 });

  it('is registered and needs a pretrained tokenizer (no character alphabet)', () => {
    expect(taskNames()).toContain('math-answer');
    expect(task.alphabet).toBeNull();
  });

  it('rewards correct (1) and format (0.2) by default, through the composite-reward machinery', () => {
    expect(resolveRewards(task).map((r) => [r.name, r.weight])).toEqual([['correct', 1], ['format', 0.2]]);
    expect(resolveRewards(task, { format: 0 }).map((r) => r.name)).toEqual(['correct']);
    const meta = mathAnswerMeta('#### 1,250');
    const [correct, format] = task.rewards;
    expect(correct.fn('p', '<think>x</think><answer>1250</answer>', meta)).toBe(1);
    expect(correct.fn('p', 'so \\boxed{1250.0}', meta)).toBe(1);
    expect(correct.fn('p', '<think>x</think><answer>1251</answer>', meta)).toBe(0);
    expect(correct.fn('p', '1250', meta)).toBe(0); // no final-answer marker
    expect(format.fn('p', '<think>x</think><answer>1251</answer>', meta)).toBe(1);
    expect(format.fn('p', 'so \\boxed{1250}', meta)).toBe(0);
  });

  it('reads reference answers in every supported form, and refuses one without a number', () => {
    expect(mathAnswerMeta('Natalia sold 24 clips.\n#### 72')).toEqual({ answer: '72' });
    expect(mathAnswerMeta('\\boxed{\\frac{3}{4}}')).toEqual({ answer: '3/4' });
    expect(mathAnswerMeta('-2.5')).toEqual({ answer: '-5/2' });
    expect(mathAnswerMeta('1,000')).toEqual({ answer: '1000' });
    expect(() => mathAnswerMeta('seventy-two')).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
    expect(() => task.isCorrect('p', '<answer>1</answer>', { answer: 'x' })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
  });

  it('generates deterministic, disjoint splits whose SFT targets score full reward', () => {
    const again = createTask('math-answer', { seed: 7 });
    const train = Array.from({ length: 200 }, (_, i) => task.example('train', i));
    const test = new Set(Array.from({ length: 50 }, (_, i) => task.example('test', i).prompt));
    for (const [i, ex] of train.entries()) {
      expect(again.example('train', i)).toEqual(ex);
      expect(test.has(ex.prompt)).toBe(false);
      expect(task.isCorrect(ex.prompt, ex.target!, ex.meta)).toBe(true);
      expect(task.rewards[1].fn(ex.prompt, ex.target!, ex.meta)).toBe(1);
      expect(task.answerOf!(ex.target!)).toBe((ex.meta as { answer: string }).answer);
    }
    expect(createTask('math-answer', { seed: 8 }).example('train', 0)).not.toEqual(train[0]);
  });

  it('builds the R1 target from a GSM8K solution', () => {
    expect(r1Target('3 * 4 = 12\n#### 12', '12')).toBe('<think>\n3 * 4 = 12\n</think>\n<answer>12</answer>');
  });

  it('rejects unknown options with their names', () => {
    expect(() => createTask('math-answer', { seed: 1, options: { max_digits: 2 } })).toThrow(/unknown option\(s\) max_digits/);
  });
});

describe('examples/data/math-sample.jsonl', () => {
  const lines = readFileSync(SAMPLE, 'utf8').trimEnd().split('\n');

  it('is exactly what tools/make-math-sample.mjs writes (regenerate it after changing the templates)', () => {
    expect(lines).toEqual(mathSampleLines(new Rng(MATH_SAMPLE.seed), MATH_SAMPLE.rows));
  });

  it('holds distinct problems whose worked answers agree with their #### line', () => {
    const rows = lines.map((l) => JSON.parse(l) as { question: string; answer: string });
    expect(new Set(rows.map((r) => r.question)).size).toBe(MATH_SAMPLE.rows);
    for (const r of rows) {
      const final = /#### (.+)$/.exec(r.answer)![1];
      // the last equation of the worked solution ends in the final answer
      const lastEq = r.answer.split('\n').slice(0, -1).join('\n').match(/= \$?-?\d+(?:\.\d+)?/g)!.pop()!;
      expect(lastEq.replace(/[=$ ]/g, '')).toBe(final);
      expect(mathAnswerMeta(r.answer).answer).toBe(mathAnswerMeta(final).answer);
    }
  });
});
