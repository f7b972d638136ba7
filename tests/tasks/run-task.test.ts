import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/shared/config.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { loadRunTask } from '../../src/tasks/run-task.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/hf-tiny-llama/', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../../examples/data/math-sample.jsonl', import.meta.url));
const tokenizerJson = JSON.parse(readFileSync(`${FIXTURE}tokenizer.json`, 'utf8'));
const TEMPLATE = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}";
const withTemplate = () => loadTokenizer(tokenizerJson, { tokenizerConfig: { bos_token: '<s>', eos_token: '</s>', chat_template: TEMPLATE } });
const withoutTemplate = () => loadTokenizer(tokenizerJson, { tokenizerConfig: { bos_token: '<s>', eos_token: '</s>' } });
type Logged = [string, string, Record<string, unknown>];

describe('loadRunTask', () => {
  it('a dataset without a task means math-answer', () => {
    expect(parseConfig({ dataset: 'x.jsonl' }).task).toBe('math-answer');
    expect(parseConfig({ dataset: 'x.jsonl', task: 'my-task.mjs' }).task).toBe('my-task.mjs');
    expect(parseConfig({}).task).toBe('arithmetic');
  });

  it("wraps a generated math-answer prompt in the checkpoint's chat template with the system prompt", async () => {
    const config = parseConfig({ task: 'math-answer', system_prompt: 'Reason, then answer.' });
    const plain = await loadRunTask(parseConfig({ task: 'math-answer' }), { tokenizer: null });
    const task = await loadRunTask(config, { tokenizer: await withTemplate() });
    const q = plain.example('train', 3).prompt;
    expect(task.example('train', 3).prompt).toBe(`<s>[system] Reason, then answer.\n[user] ${q}\n[assistant] `);
    expect(task.example('train', 3).meta).toEqual(plain.example('train', 3).meta);
    expect(task.maxPromptChars).toBeGreaterThan(plain.maxPromptChars);
  });

  it('uses plain text with apply_chat_template false, and warns when the checkpoint has no template', async () => {
    const off = await loadRunTask(parseConfig({ task: 'math-answer', system_prompt: 'S', apply_chat_template: false }), { tokenizer: await withTemplate() });
    expect(off.example('test', 0).prompt).toMatch(/^S\n\n[A-Z]/);
    const logged: Logged[] = [];
    const missing = await loadRunTask(parseConfig({ task: 'math-answer' }), {
      tokenizer: await withoutTemplate(),
      source: 'ckpt',
      log: (level, event, fields) => logged.push([level, event, fields ?? {}]),
    });
    expect(missing.example('test', 0).prompt).toMatch(/^[A-Z]/);
    expect(logged).toContainEqual(['warn', 'chat_template_missing', expect.objectContaining({ source: 'ckpt/tokenizer_config.json' })]);
  });

  it('never formats character-level tasks', async () => {
    const task = await loadRunTask(parseConfig({ task: 'arithmetic', system_prompt: 'S' }), { tokenizer: await withTemplate() });
    expect(task.example('train', 0).prompt).toMatch(/=$/);
    expect(task.example('train', 0).prompt).not.toContain('S');
  });

  it('reads a dataset, dropping prompts that leave no room for generation in the context (counted by tokens)', async () => {
    const logged: Logged[] = [];
    const config = parseConfig({ dataset: SAMPLE, max_gen_len: 8, task_options: { max_completion_tokens: 8 } });
    const task = await loadRunTask(config, { tokenizer: await withTemplate(), contextTokens: 120, log: (l, e, f) => logged.push([l, e, f ?? {}]) });
    const drops = logged.filter(([, e]) => e === 'dataset_rows_dropped');
    expect(drops.length).toBeGreaterThan(0);
    expect(drops[0][2]).toMatchObject({ reason: 'prompt_too_long', limit: 112 });
    const dropped = drops.reduce((n, [, , f]) => n + (f.dropped as number), 0);
    expect(task.size!.train + task.size!.test + dropped).toBe(240);
  });

  it('refuses test_dataset without dataset, and a curriculum with a dataset', async () => {
    await expect(loadRunTask(parseConfig({ task: 'math-answer', test_dataset: SAMPLE }), { tokenizer: null })).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    const curriculum = { levels: [{ test_fraction: 0.1 }, { test_fraction: 0.2 }] };
    await expect(loadRunTask(parseConfig({ dataset: SAMPLE, curriculum }), { tokenizer: null })).rejects.toMatchObject({
      code: 'GRPO_ERR_CONFIG',
      message: expect.stringContaining('leave out curriculum or dataset'),
    });
  });
});
