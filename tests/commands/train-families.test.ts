/**
 * `grpo train --checkpoint` on a Gemma2 checkpoint through the compiled CLI (dist/cli.js): the
 * coordinator, a worker child process building its model from the RunSpec and the broadcast
 * weights, and the learner, for one step; the run's checkpoint is a Gemma2 checkpoint again.
 * Gemma2 is the family furthest from Llama (soft-capping, sliding window, sandwich norms, GeGLU).
 * Skipped (with a message) when dist/cli.js is missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, parseModelConfig, saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';

const CLI = resolve('dist/cli.js');
const missing = existsSync(CLI) ? null : `${CLI} is missing; build it with \`npx tsc -p .\``;
if (missing !== null) console.warn(`skipping the Gemma2 grpo train test: ${missing}`);

describe.skipIf(missing !== null)('grpo train on a Gemma2 checkpoint (compiled CLI)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-train-gemma2-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('trains a step with a worker process and writes a Gemma2 checkpoint', async () => {
    const tokenizer = tokenizerForTask(createTask('arithmetic', { seed: 1, options: { max_digits: 1, max_depth: 1 } }));
    const config = parseModelConfig({
      model_type: 'gemma2',
      vocab_size: tokenizer.vocabSize,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      max_position_embeddings: 64,
      sliding_window: 4,
      query_pre_attn_scalar: 8,
      bos_token_id: tokenizer.bosId,
      eos_token_id: tokenizer.eosId,
      pad_token_id: tokenizer.padId,
      initializer_range: 0.3,
    });
    const model = LlamaModel.create(config, 5);
    const start = join(root, 'start');
    await saveCheckpoint(start, { config, weights: await model.toHostTensors(), tokenizer }, { weightsDtype: 'bfloat16' });
    model.dispose();

    const out = join(root, 'run');
    // prettier-ignore
    const r = spawnSync(process.execPath, [CLI,
      'train', '--checkpoint', start, '--out', out, '--backend', 'cpu', '--steps', '1', '--workers', '1',
      '--worker-capacity', '2', '--eval-samples', '2', '--prompts-per-step', '2', '--group-size', '4',
      '--max-gen-len', '6', '--task-options', 'max_digits=1,max_depth=1',
    ], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, GRPO_TOKEN: '' } });
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/"event":"joined","worker":0/);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary.steps).toBe(1);
    expect(summary.groups.admitted).toBeGreaterThanOrEqual(2);
    const trained = await loadCheckpoint(join(out, 'checkpoint'));
    expect(trained.config).toEqual(config);
    expect(trained.weights.has('model.layers.1.post_feedforward_layernorm.weight')).toBe(true);
  }, 150_000);
});
