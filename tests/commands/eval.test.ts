import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalCommand } from '../../src/commands/eval.js';
import { writeTinyCheckpoint } from './fixture.js';
import { captureIO } from './helpers.js';

let root: string;
let ckpt: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-eval-'));
  ckpt = join(root, 'ckpt');
  await writeTinyCheckpoint(ckpt, { seed: 9, task_options: { max_depth: 1 } });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo eval (in-process)', () => {
  it('--json prints one JSON object with accuracy, pass@k and the run\'s task settings', async () => {
    const cap = captureIO();
    await evalCommand({ checkpoint: ckpt, samples: '6', k: '2', json: true }, cap.io);
    expect(cap.out).toHaveLength(1);
    const r = JSON.parse(cap.out[0]);
    expect(r).toMatchObject({
      checkpoint: ckpt,
      task: 'arithmetic',
      seed: 9, // from the checkpoint's trainer_state.json
      taskOptions: { max_depth: 1 },
      samples: 6,
      k: 2,
      n: 2,
      temperature: 1,
      backend: expect.any(String),
    });
    expect(r.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.accuracy).toBeLessThanOrEqual(1);
    expect(r.correct).toBe(Math.round(r.accuracy * 6));
    expect(typeof r.passAtK).toBe('number');
    expect(r.examples[0]).toEqual({ prompt: expect.stringMatching(/=$/), target: expect.any(String), completion: expect.any(String), correct: expect.any(Boolean) });
    expect(cap.events[0].event).toBe('engine');
  });

  it('prints a readable table by default and lets flags override the saved task settings', async () => {
    const cap = captureIO();
    await evalCommand({ checkpoint: ckpt, samples: '4', seed: '2', taskOptions: 'max_depth=2,min_depth=2' }, cap.io);
    const text = cap.out.join('\n');
    expect(text).toMatch(/^checkpoint\s+/m);
    expect(text).toMatch(/^accuracy \(greedy\)\s+[\d.]+% \(\d+\/4\)$/m);
    expect(text).toMatch(/^pass@1\s+n\/a/m);
    expect(text).toMatch(/"min_depth":2.*seed 2/);
    expect(text).toMatch(/examples \(greedy\):/);
  });

  it('fails with coded errors', async () => {
    await expect(evalCommand({ checkpoint: ckpt, samples: '4', k: '3', n: '2' }, captureIO().io)).rejects.toMatchObject({
      code: 'GRPO_ERR_EVAL_OPTIONS',
    });
    await expect(evalCommand({ checkpoint: ckpt, samples: 'x' }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_EVAL_OPTIONS' });
    await expect(evalCommand({ checkpoint: join(root, 'nope') }, captureIO().io)).rejects.toMatchObject({
      code: 'GRPO_ERR_CHECKPOINT_NOT_FOUND',
    });
    await expect(evalCommand({ checkpoint: ckpt, task: 'nope' }, captureIO().io)).rejects.toMatchObject({ code: 'GRPO_ERR_UNKNOWN_TASK' });
  });
});
