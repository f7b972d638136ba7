/**
 * End to end on a pretrained Hugging Face checkpoint and a dataset file, through the compiled CLI
 * (dist/cli.js): `grpo train --model DIR --dataset FILE` (no SFT; coordinator, one worker child
 * process over real WebSockets, the learner), then `grpo eval` on its checkpoint and
 * `grpo sft --model DIR --dataset FILE`. The model is tests/fixtures/hf-tiny-llama with its
 * context raised to 512 positions (RoPE has no position weights, so the weights are unchanged) and
 * a chat template added, so the sample word problems fit; the data is examples/data/math-sample.jsonl.
 * Tiny settings, cpu backend; the tokenizer knows only lower-case letters, so the rewards are
 * mostly 0 and dynamic sampling is off (the loop, not learning, is under test here).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = resolve('dist/cli.js');
const SAMPLE = resolve('examples/data/math-sample.jsonl');
const FIXTURE = resolve('tests/fixtures/hf-tiny-llama');
/** A tiny Qwen2 (q/k/v biases, tied embeddings) when the model loader ships its fixture. */
const QWEN2 = resolve('tests/fixtures/hf-tiny-qwen2');
const TEMPLATE = "{% for m in messages %}{{ '<s>' if loop.first else '' }}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}";

function grpo(args: string[], timeout = 120_000) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout, env: { ...process.env, GRPO_TOKEN: '' } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const events = (stderr: string, event: string): Record<string, unknown>[] =>
  stderr.split('\n').filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);

const root = mkdtempSync(join(tmpdir(), 'grpo-pretrained-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A copy of a fixture checkpoint with a 512-position context and a chat template. */
function pretrained(fixture: string, name: string): string {
  const dir = join(root, name);
  cpSync(fixture, dir, { recursive: true });
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...c, max_position_embeddings: 512 }));
  const t = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...t, chat_template: TEMPLATE, model_max_length: 512 }));
  return dir;
}
const model = pretrained(FIXTURE, 'model');
const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));

describe.skipIf(!existsSync(CLI))('pretrained checkpoint + dataset file (compiled CLI)', () => {
  const out = join(root, 'run');

  it('grpo train --model DIR --dataset FILE runs GRPO steps through coordinator and a worker, with no SFT', () => {
    // prettier-ignore
    const r = grpo([
      'train', '--model', model, '--dataset', SAMPLE, '--out', out, '--backend', 'cpu', '--steps', '2',
      '--workers', '1', '--worker-capacity', '2', '--prompts-per-step', '2', '--group-size', '2',
      '--max-gen-len', '4', '--task-options', 'max_completion_tokens=4', '--eval-samples', '500',
      '--dynamic-sampling', 'false', '--system-prompt', 'think, then answer', '--test-fraction', '0.02',
    ]);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    const loaded = events(r.stderr, 'dataset_loaded');
    expect(loaded).toHaveLength(1);
    expect(loaded[0]).toMatchObject({ file: SAMPLE, fields: { prompt: 'question', answer: 'answer' }, dropped: { train: 0, test: 0 } });
    expect((loaded[0].train as number) + (loaded[0].test as number)).toBe(240);
    // eval_samples 500 asks for more than the held-out split has: each held-out row is scored once
    expect(loaded[0].test as number).toBeLessThan(15);
    expect(r.stdout).toContain(`held-out accuracy on ${loaded[0].test as number} math-answer problems`);
    expect(r.stderr).toMatch(/"event":"joined","worker":0/);

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ task: 'math-answer', steps: 2, interrupted: false, sft: null, sftSeconds: 0 });
    expect(summary.groups.admitted).toBeGreaterThanOrEqual(4);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics).toHaveLength(2);
    expect(Object.keys(metrics[0].rewards).sort()).toEqual(['correct', 'format']);
    // the checkpoint keeps the chat template and the data keys, so eval and resume format prompts alike
    expect(JSON.parse(readFileSync(join(out, 'checkpoint', 'tokenizer_config.json'), 'utf8')).chat_template).toBe(TEMPLATE);
    const state = JSON.parse(readFileSync(join(out, 'checkpoint', 'trainer_state.json'), 'utf8'));
    expect(state.config).toMatchObject({ task: 'math-answer', dataset: SAMPLE, model, system_prompt: 'think, then answer' });
    expect(state.dataCursor.next).toBeGreaterThanOrEqual(4);
  }, 240_000);

  it.skipIf(!existsSync(QWEN2))('grpo train --model DIR --dataset FILE on the tiny Qwen2 fixture', () => {
    const qwen = pretrained(QWEN2, 'qwen2');
    const qOut = join(root, 'run-qwen2');
    // prettier-ignore
    const r = grpo([
      'train', '--model', qwen, '--dataset', SAMPLE, '--out', qOut, '--backend', 'cpu', '--steps', '2',
      '--workers', '1', '--worker-capacity', '2', '--prompts-per-step', '2', '--group-size', '2',
      '--max-gen-len', '4', '--task-options', 'max_completion_tokens=4', '--eval-samples', '2', '--dynamic-sampling', 'false',
    ]);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(join(qOut, 'summary.json'), 'utf8'))).toMatchObject({ task: 'math-answer', steps: 2, sft: null });
    expect(JSON.parse(readFileSync(join(qOut, 'checkpoint', 'config.json'), 'utf8')).model_type).toBe('qwen2');
  }, 240_000);

  it('grpo eval reads the run\'s dataset and template from the checkpoint', () => {
    const r = grpo(['eval', '--checkpoint', join(out, 'checkpoint'), '--samples', '3', '--backend', 'cpu', '--json']);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ task: 'math-answer', samples: 3 });
    expect(report.examples[0].prompt).toMatch(/^<s>system: think, then answer\nuser: .+\nassistant: $/);
  }, 120_000);

  it('grpo eval --model DIR --test-dataset FILE evaluates every row of a file once', () => {
    const test = join(root, 'test.csv');
    writeFileSync(test, 'question,answer\nhow many,3\nhow few,1\n');
    const r = grpo(['eval', '--model', model, '--test-dataset', test, '--dataset', SAMPLE, '--task-options', 'max_completion_tokens=4', '--backend', 'cpu', '--json']);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(JSON.parse(r.stdout)).toMatchObject({ task: 'math-answer', samples: 2 });
  }, 120_000);

  it('grpo sft --model DIR --dataset FILE fine-tunes the checkpoint on the file\'s completions', () => {
    const sftOut = join(root, 'sft');
    // prettier-ignore
    const r = grpo([
      'sft', '--model', model, '--dataset', SAMPLE, '--completion-field', 'answer', '--out', sftOut, '--backend', 'cpu',
      '--steps', '2', '--batch-size', '2', '--eval-samples', '2', '--task-options', 'max_completion_tokens=4',
    ]);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/sft done: step 2\/2, loss \d+\.\d+/);
    const state = JSON.parse(readFileSync(join(sftOut, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ phase: 'sft', step: 2, dataCursor: { index: 4 } });
    expect(JSON.parse(readFileSync(join(sftOut, 'config.json'), 'utf8')).hidden_size).toBe(config.hidden_size); // the pretrained shape, not a preset
  }, 120_000);

  it('asks for --model when a dataset is given without a checkpoint', () => {
    const r = grpo(['train', '--dataset', SAMPLE, '--out', join(root, 'nomodel'), '--backend', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error GRPO_ERR_CONFIG: --dataset .* needs a model that can read it: give --model DIR/m);
  }, 60_000);

  it('names the field when a dataset row lacks it, before any work', () => {
    const bad = join(root, 'bad.jsonl');
    writeFileSync(bad, '{"question": "a", "answer": "1"}\n{"question": "b"}\n');
    const r = grpo(['train', '--model', model, '--dataset', bad, '--test-dataset', bad, '--out', join(root, 'bad'), '--backend', 'cpu', '--workers', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error GRPO_ERR_DATASET_FIELD: ${bad} line 2: field "answer" is missing (the record has keys question)`);
  }, 120_000);
});
