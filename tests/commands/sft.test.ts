import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sftCommand } from '../../src/commands/sft.js';
import { tf } from '../../src/engine/tf.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { captureIO } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-sft-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Flags as commander hands them over: strings, camelCase. A tiny, fast run. */
const flags = (out: string) => ({
  out,
  steps: '4',
  batchSize: '8',
  modelSize: 'tiny',
  saveInterval: '2',
  evalSamples: '8',
  taskOptions: 'max_depth=1',
  seed: '3',
});

describe('grpo sft (in-process)', () => {
  it('trains, writes a loadable checkpoint with optimizer and trainer state, and reports held-out accuracy', async () => {
    const dir = join(root, 'straight');
    const cap = captureIO();
    const result = await sftCommand(flags(dir), cap.io);
    expect(result).toMatchObject({ step: 4, totalSteps: 4, interrupted: false });
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(cap.events[0].event).toBe('engine');
    expect(cap.events.filter((e) => e.event === 'sft_step').map((e) => e.fields.step)).toEqual([1, 2, 3, 4]);
    expect(cap.out.at(-1)).toMatch(/^sft done: step 4\/4, loss [\d.]+, held-out accuracy [\d.]+% \(\d+\/8\)/);

    const ckpt = await loadCheckpoint(dir, { withOptimizer: true });
    expect(ckpt.config.hidden_size).toBe(64); // the tiny preset
    expect(ckpt.tokenizer.decode(ckpt.tokenizer.encode('(4-2)/-6='))).toBe('(4-2)/-6=');
    expect(ckpt.optimizer!.get('model.embed_tokens.weight.exp_avg')!.shape).toEqual(ckpt.weights.get('model.embed_tokens.weight')!.shape);
    expect(ckpt.optimizer!.get('model.norm.weight.step')!.data[0]).toBe(4);
    const state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ step: 4, policyVersion: 0, phase: 'sft', dataCursor: { split: 'train', index: 32 } });
    expect(state.config).toMatchObject({ sft_steps: 4, sft_batch_size: 8, seed: 3, task_options: { max_depth: 1 } });
    expect(state.eval).toEqual({ samples: 8, accuracy: result.eval.accuracy });
  });

  it('writes where the config file says and never saves the shared token', async () => {
    const dir = join(root, 'from-file');
    const file = join(root, 'sft.yaml');
    await writeFile(file, `out: ${JSON.stringify(dir)}\ntoken: s3cret\nsft_steps: 2\nsft_batch_size: 4\neval_samples: 4\nmodel_size: tiny\n`);
    const result = await sftCommand({ config: file }, captureIO().io);
    expect(result.out).toBe(dir);
    const state = await readFile(join(dir, 'trainer_state.json'), 'utf8');
    expect(JSON.parse(state).config.token).toBeNull();
    expect(state).not.toContain('s3cret');
  });

  it('an interrupted run resumed with --resume ends with exactly the weights of an uninterrupted one', async () => {
    const dir = join(root, 'resumed');
    const abort = new AbortController();
    const first = captureIO((event, fields) => {
      if (event === 'sft_step' && fields.step === 2) abort.abort();
    });
    const partial = await sftCommand(flags(dir), first.io, abort.signal);
    expect(partial).toMatchObject({ step: 2, interrupted: true });
    expect(first.out.at(-1)).toMatch(/^sft interrupted: step 2\/4/);

    const second = captureIO();
    const tensorsBefore = tf.memory().numTensors;
    const resumed = await sftCommand({ resume: dir }, second.io);
    expect(tf.memory().numTensors).toBe(tensorsBefore); // steps, eval and saves leak nothing
    expect(resumed).toMatchObject({ step: 4, interrupted: false, out: dir });
    expect(second.events.find((e) => e.event === 'sft_start')!.fields.fromStep).toBe(2);
    expect(second.events.filter((e) => e.event === 'sft_step').map((e) => e.fields.step)).toEqual([3, 4]);

    const a = await loadCheckpoint(join(root, 'straight'), { withOptimizer: true });
    const b = await loadCheckpoint(dir, { withOptimizer: true });
    for (const [name, t] of a.weights) expect(b.weights.get(name)!.data, name).toEqual(t.data);
    for (const [name, t] of a.optimizer!) expect(b.optimizer!.get(name)!.data, name).toEqual(t.data);
    expect(b.trainerState).toMatchObject({ step: 4, dataCursor: { index: 32 } });
  });

  it('refuses to resume with a changed model or data setting, or from a checkpoint without SFT state', async () => {
    const dir = join(root, 'straight');
    await expect(sftCommand({ resume: dir, seed: '4' }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_RESUME' });
    await expect(sftCommand({ resume: dir, batchSize: '16' }, captureIO().io)).rejects.toThrow(/--sft-batch-size/);

    const bare = join(root, 'bare');
    const task = createTask('arithmetic', { seed: 1 });
    const tokenizer = tokenizerForTask(task);
    const config = presetConfig('tiny', tokenizer);
    const model = LlamaModel.create(config, 1);
    await saveCheckpoint(bare, { config, weights: await model.toHostTensors(), tokenizer });
    model.dispose();
    await expect(sftCommand({ resume: bare }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_RESUME' });
  });

  it('will not start a fresh run over an existing checkpoint', async () => {
    await expect(sftCommand(flags(join(root, 'straight')), captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_CHECKPOINT_EXISTS' });
  });

  it('rejects bad flags with coded errors before training', async () => {
    await expect(sftCommand({ ...flags(join(root, 'x')), taskOptions: 'max_dept=1' }, captureIO().io)).rejects.toMatchObject({
      code: 'GRPO_ERR_TASK_OPTIONS',
    });
    await expect(sftCommand({ ...flags(join(root, 'x')), steps: 'many' }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    await expect(sftCommand({ ...flags(join(root, 'x')), sftSteps: '3' }, captureIO().io)).rejects.toThrow(/--steps and --sft-steps/);
  });
});
