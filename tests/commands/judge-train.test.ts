import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgeTrainCommand } from '../../src/commands/judge-train.js';
import { Judge } from '../../src/tasks/fill-in/judge.js';
import { captureIO } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-judge-train-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo judge-train (in-process)', () => {
  it('trains a judge, prints its held-out check and writes a checkpoint that loads as a judge', async () => {
    const out = join(root, 'judge');
    const cap = captureIO();
    const r = await judgeTrainCommand({ out, steps: '8', batchSize: '8', evalPairs: '10', seed: '3' }, cap.io);
    expect(r.step).toBe(8);
    expect(cap.out).toHaveLength(1);
    expect(cap.out[0]).toMatch(/^judge done: step 8, loss \d+\.\d{4} nats\/char; held-out: clean sentence above a one-letter-wrong copy in \d+\.\d% of 10 pairs .*; checkpoint /);
    expect(cap.events.map((e) => e.event)).toEqual(expect.arrayContaining(['engine', 'judge_train_start', 'judge_train_done']));
    const state = JSON.parse(await readFile(join(out, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ phase: 'judge', step: 8, corpus: { task: 'fill-in', seed: 3 }, config: { steps: 8, batchSize: 8, modelSize: 'tiny' } });
    const judge = await Judge.load(out);
    try {
      const [s] = await judge.score(['the cat runs fast.']);
      expect(s > 0 && s <= 1).toBe(true);
    } finally {
      judge.dispose();
    }
    // a judge in use is never overwritten
    await expect(judgeTrainCommand({ out, steps: '1' }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_CHECKPOINT_EXISTS' });
  });

  it('rejects bad flags with GRPO_ERR_JUDGE_OPTIONS', async () => {
    const io = captureIO().io;
    const out = join(root, 'never');
    await expect(judgeTrainCommand({ out, modelSize: 'huge' }, io)).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_OPTIONS' });
    await expect(judgeTrainCommand({ out, steps: 'many' }, io)).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_OPTIONS' });
    await expect(judgeTrainCommand({ out, batchSize: '0' }, io)).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_OPTIONS' });
  });
});
