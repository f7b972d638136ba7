import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DataCursor } from '../../../src/learner/data-cursor.js';
import { ChatTemplate } from '../../../src/model/chat-template.js';
import { loadDatasetTask, type DatasetSpec } from '../../../src/tasks/dataset/dataset-task.js';
import { getPath } from '../../../src/tasks/dataset/rows.js';
import { createTask } from '../../../src/tasks/index.js';
import { PLAIN, type PromptFormat } from '../../../src/tasks/prompt-format.js';
import type { Task } from '../../../src/tasks/types.js';

const dir = mkdtempSync(join(tmpdir(), 'grpo-dataset-task-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const SAMPLE = fileURLToPath(new URL('../../../examples/data/math-sample.jsonl', import.meta.url));
const LLAMA3 = JSON.parse(readFileSync(fileURLToPath(new URL('../../fixtures/chat-templates/llama-3/tokenizer_config.json', import.meta.url)), 'utf8'));

const math = createTask('math-answer', { seed: 1 });
type Logged = [string, string, Record<string, unknown>];

function spec(over: Partial<DatasetSpec> & { file: string }): DatasetSpec {
  return {
    testFile: null,
    testFraction: 0.2,
    seed: 1,
    fields: { prompt: null, answer: null, completion: null, needCompletion: false },
    maxPromptLength: 10_000,
    ...over,
  };
}
async function failure(p: Promise<unknown>): Promise<Error & { code: string }> {
  return p.then(() => { throw new Error('expected a failure'); }, (e: Error & { code: string }) => e);
}

describe('dataset task: fields', () => {
  it('finds question/answer by default and reads answers with the task (GSM8K ####)', async () => {
    const t = await loadDatasetTask(math, PLAIN, spec({ file: SAMPLE }));
    expect(t.dataset.fields).toEqual({ prompt: 'question', answer: 'answer', completion: null });
    const ex = t.example('train', 0);
    expect(ex.meta).toEqual({ answer: expect.stringMatching(/^-?\d+(\/\d+)?$/) });
    expect(t.isCorrect(ex.prompt, `<think>x</think><answer>${(ex.meta as { answer: string }).answer}</answer>`, ex.meta)).toBe(true);
    expect(t.rewards.map((r) => r.name)).toEqual(['correct', 'format']); // the base task's
  });

  it('reads dotted paths into nested records and lists', async () => {
    const p = file('nested.jsonl', jsonl([
      { data: { turns: [{ text: 'Q one?' }] }, labels: { final: 7 } },
      { data: { turns: [{ text: 'Q two?' }] }, labels: { final: '1,500' } },
    ]));
    const t = await loadDatasetTask(math, PLAIN, spec({ file: p, testFraction: 0.01, fields: { prompt: 'data.turns.0.text', answer: 'labels.final', completion: null, needCompletion: false }, testFile: p }));
    const prompts = [t.example('train', 0), t.example('train', 1)].map((e) => [e.prompt, e.meta]);
    expect(prompts.sort()).toEqual([['Q one?', { answer: '7' }], ['Q two?', { answer: '1500' }]]);
    expect(getPath({ a: [{ b: 1 }] }, 'a.0.b')).toBe(1);
    expect(getPath({ a: [{ b: 1 }] }, 'a.1.b')).not.toBe(1);
  });

  it("reads TRL's conversational format: the final assistant turn is the completion, the rest the prompt", async () => {
    const p = file('chat.jsonl', jsonl([
      { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '<answer>4</answer>' }], answer: '4' },
      { messages: [{ role: 'user', content: 'What is 3+3?' }, { role: 'assistant', content: '<answer>6</answer>' }], answer: '6' },
    ]));
    const fmt: PromptFormat = { template: ChatTemplate.fromTokenizerConfig(LLAMA3), systemPrompt: 'Think first.' };
    const t = await loadDatasetTask(math, fmt, spec({ file: p, testFile: p, fields: { prompt: null, answer: null, completion: null, needCompletion: true } }));
    const rows = [0, 1].map((i) => t.example('test', i));
    expect(rows[0]).toEqual({
      prompt:
        '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' + // the row's own system message is kept
        '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
      target: '<answer>4</answer>',
      meta: { answer: '4' },
    });
    expect(rows[1].prompt).toContain('system<|end_header_id|>\n\nThink first.<|eot_id|>'); // system_prompt added where there is none
  });

  it('refuses a conversation when there is no chat template to render it', async () => {
    const p = file('chat2.jsonl', jsonl([{ prompt: [{ role: 'user', content: 'hi' }], answer: '1' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p })));
    expect(err.code).toBe('GRPO_ERR_CHAT_TEMPLATE');
    expect(err.message).toContain('chat2.jsonl line 1 is a conversation');
  });

  it('puts system_prompt before plain prompts without a template', async () => {
    const p = file('plain.jsonl', jsonl([{ prompt: 'Q?', answer: '1' }]));
    const t = await loadDatasetTask(math, { template: null, systemPrompt: 'Answer in <answer> tags.' }, spec({ file: p, testFile: p }));
    expect(t.example('train', 0).prompt).toBe('Answer in <answer> tags.\n\nQ?');
  });
});

describe('dataset task: bad input names the file, the line and the field', () => {
  it('a record missing the prompt field', async () => {
    const p = file('missing.jsonl', jsonl([{ question: 'a', answer: '1' }, { answer: '2' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p })));
    expect(err.code).toBe('GRPO_ERR_DATASET_FIELD');
    expect(err.message).toBe(`${p} line 2: field "question" is missing (the record has keys answer)`);
  });

  it('a record missing the answer field, and a null answer', async () => {
    const p = file('noanswer.jsonl', jsonl([{ question: 'a', answer: '1' }, { question: 'b', answer: '2' }, { question: 'c' }]));
    expect((await failure(loadDatasetTask(math, PLAIN, spec({ file: p })))).message).toMatch(/noanswer\.jsonl line 3: field "answer" is missing/);
    const q = file('nullanswer.csv', 'question,answer\nq,1\n');
    const r = file('nullanswer.jsonl', jsonl([{ question: 'q', answer: null }]));
    expect((await failure(loadDatasetTask(math, PLAIN, spec({ file: r, testFile: q })))).message).toMatch(/line 1: field "answer" is null/);
  });

  it('a file with no usable prompt field names the keys it has', async () => {
    const p = file('nofield.jsonl', jsonl([{ text: 'a', answer: '1' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p })));
    expect(err.message).toMatch(/nofield\.jsonl line 1: no prompt field: the record has keys text, answer; set prompt_field/);
  });

  it('an answer the task cannot read', async () => {
    const p = file('badanswer.csv', 'question,answer\nq1,12\nq2,twelve\n');
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p })));
    expect(err.code).toBe('GRPO_ERR_TASK_META');
    expect(err.message).toMatch(/badanswer\.csv line 3: field answer: math-answer: the reference answer "twelve" holds no number/);
  });

  it('SFT rows without a completion', async () => {
    const p = file('nocompletion.jsonl', jsonl([{ question: 'q', answer: '1' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p, fields: { prompt: null, answer: null, completion: null, needCompletion: true } })));
    expect(err.message).toMatch(/nocompletion\.jsonl line 1: no completion: set completion_field/);
  });
});

describe('dataset task: splits and order', () => {
  const rows = Array.from({ length: 200 }, (_, i) => ({ question: `Problem ${i}?`, answer: String(i) }));
  const p = file('split.jsonl', jsonl(rows));

  it('holds out test_fraction of the prompts, disjoint from train, whatever the row order', async () => {
    const t = await loadDatasetTask(math, PLAIN, spec({ file: p, testFraction: 0.25 }));
    const train = new Set(Array.from({ length: t.size!.train }, (_, i) => t.example('train', i).prompt));
    const test = new Set(Array.from({ length: t.size!.test }, (_, i) => t.example('test', i).prompt));
    expect(train.size + test.size).toBe(200);
    expect([...test].filter((x) => train.has(x))).toEqual([]);
    expect(test.size).toBeGreaterThan(30);
    expect(test.size).toBeLessThan(70);
    const reversed = await loadDatasetTask(math, PLAIN, spec({ file: file('reversed.jsonl', jsonl([...rows].reverse())), testFraction: 0.25 }));
    expect(new Set(Array.from({ length: reversed.size!.test }, (_, i) => reversed.example('test', i).prompt))).toEqual(test);
  });

  it('uses a second file as the test split', async () => {
    const q = file('test.csv', 'question,answer\nHeld out?,5\n');
    const t = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: q }));
    expect(t.size).toEqual({ train: 200, test: 1 });
    expect(t.example('test', 0)).toEqual({ prompt: 'Held out?', meta: { answer: '5' } });
    expect(t.example('test', 3)).toEqual(t.example('test', 0)); // wraps
  });

  it('visits every train row once per epoch in a seeded order, reshuffled each epoch', async () => {
    const t = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p }));
    const epoch = (e: number) => Array.from({ length: 200 }, (_, i) => t.example('train', e * 200 + i).prompt);
    const e0 = epoch(0);
    expect(new Set(e0).size).toBe(200);
    expect(e0).not.toEqual(rows.map((r) => r.question)); // shuffled
    expect(epoch(1)).not.toEqual(e0);
    expect(new Set(epoch(1))).toEqual(new Set(e0));
    const again = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p }));
    expect(Array.from({ length: 200 }, (_, i) => again.example('train', i).prompt)).toEqual(e0);
    const other = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p, seed: 2 }));
    expect(Array.from({ length: 200 }, (_, i) => other.example('train', i).prompt)).not.toEqual(e0);
  });

  it("works with the learner's resume-safe data cursor: a restored run gets the same rows for its positions", async () => {
    const t = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p }));
    const cursor = new DataCursor();
    const first = cursor.next(8);
    for (const pos of first.slice(0, 5)) cursor.admit(pos);
    cursor.requeue(first[5]); // a stale group
    const state = cursor.state();
    const expected = [first[5], first[6], first[7], 8, 9].map((pos) => t.example('train', pos).prompt);
    // a new process: the file is read again, the cursor restored
    const resumed = await loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p }));
    const restored = DataCursor.fromState(JSON.parse(JSON.stringify(state)));
    expect(restored.next(5).map((pos) => resumed.example('train', pos).prompt)).toEqual(expected);
  });

  it('fails clearly when the test split comes out empty', async () => {
    const q = file('tiny.jsonl', jsonl([{ question: 'only one?', answer: '1' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: q, testFraction: 0.01 })));
    expect(err.code).toBe('GRPO_ERR_DATASET');
    expect(err.message).toMatch(/the test split is empty \(no row fell in it\); raise test_fraction or give test_dataset/);
  });
});

describe('dataset task: rows dropped for length are counted and logged', () => {
  it('drops prompts over the limit with a dataset_rows_dropped line per split', async () => {
    const p = file('long.jsonl', jsonl([
      { question: 'short?', answer: '1' },
      { question: 'x'.repeat(50), answer: '2' },
      { question: 'also short?', answer: '3' },
      { question: 'y'.repeat(60), answer: '4' },
    ]));
    const logged: Logged[] = [];
    const t: Task & { dataset: { dropped: { train: number } } } = await loadDatasetTask(math, PLAIN, spec({
      file: p,
      testFile: p,
      maxPromptLength: 20,
      log: (level, event, fields) => logged.push([level, event, fields ?? {}]),
    }));
    expect(t.size!.train).toBe(2);
    expect(t.dataset.dropped.train).toBe(2);
    const drops = logged.filter(([, e]) => e === 'dataset_rows_dropped');
    expect(drops).toEqual([
      ['warn', 'dataset_rows_dropped', { split: 'train', reason: 'prompt_too_long', dropped: 2, kept: 2, limit: 20, first: `${p} line 2`, firstLength: 50 }],
      ['warn', 'dataset_rows_dropped', { split: 'test', reason: 'prompt_too_long', dropped: 2, kept: 2, limit: 20, first: `${p} line 2`, firstLength: 50 }],
    ]);
    expect(logged.find(([, e]) => e === 'dataset_loaded')?.[2]).toMatchObject({
      train: 2,
      test: 2,
      dropped: { train: 2, test: 2 },
      sha256: { file: createHash('sha256').update(readFileSync(p)).digest('hex') },
    });
  });

  it('measures with the given function (tokens) and fails when every row is too long', async () => {
    const p = file('alllong.jsonl', jsonl([{ question: 'a b c d', answer: '1' }]));
    const err = await failure(loadDatasetTask(math, PLAIN, spec({ file: p, testFile: p, maxPromptLength: 3, measure: (s) => s.split(' ').length })));
    expect(err.message).toMatch(/the train split is empty \(all 1 rows are too long for the model's context/);
  });

  it('for SFT drops train rows whose prompt and completion together overflow the context', async () => {
    const p = file('sftlong.jsonl', jsonl([
      { question: 'a b', answer: '1', completion: 'c d' },
      { question: 'a b', answer: '2', completion: 'c d e f g h' },
    ]));
    const logged: Logged[] = [];
    const words = (s: string) => s.split(' ').length;
    const t = await loadDatasetTask(math, PLAIN, spec({
      file: p,
      testFile: p,
      maxPromptLength: 10,
      measure: words,
      maxSequenceLength: 5,
      measureCompletion: (s) => words(s) + 1, // + EOS
      fields: { prompt: null, answer: null, completion: null, needCompletion: true },
      log: (level, event, fields) => logged.push([level, event, fields ?? {}]),
    }));
    expect(t.size).toEqual({ train: 1, test: 2 }); // held-out rows are prompts only
    expect(t.example('train', 0).target).toBe('c d');
    expect(logged.filter(([, e]) => e === 'dataset_rows_dropped')).toEqual([
      ['warn', 'dataset_rows_dropped', { split: 'train', reason: 'sequence_too_long', dropped: 1, kept: 1, limit: 5, first: `${p} line 2`, firstLength: 9 }],
    ]);
  });
});
