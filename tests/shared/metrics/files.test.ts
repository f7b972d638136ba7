import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isGrpoError } from '../../../src/shared/errors.js';
import { flattenRecord, TrainingStatsWriter } from '../../../src/shared/metrics/files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grpo-stats-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown[]>;

describe('flattenRecord', () => {
  it('joins nested keys with dots and writes what JSON cannot hold as null', () => {
    expect(flattenRecord({ step: 1, kl: NaN, lr: Infinity, rewards: { correct: 0.5, nested: { x: 1 } }, updated: true, ids: [1, 2] })).toEqual({
      step: 1,
      kl: null,
      lr: null,
      'rewards.correct': 0.5,
      'rewards.nested.x': 1,
      updated: true,
      ids: '[1,2]',
    });
  });
});

describe('TrainingStatsWriter', () => {
  it('rewrites training_stats.json after each step with one array per metric', () => {
    const path = join(dir, 'run', 'training_stats.json');
    const w = new TrainingStatsWriter(path, { append: false });
    w.write({ step: 1, rewardMean: 0.1, kl: NaN, rewards: { correct: 0.2 } });
    expect(read(path)).toEqual({ step: [1], rewardMean: [0.1], kl: [null], 'rewards.correct': [0.2] });
    w.write({ step: 2, rewardMean: 0.3, kl: 0.01, rewards: { correct: 0.4 } });
    expect(read(path)).toEqual({ step: [1, 2], rewardMean: [0.1, 0.3], kl: [null, 0.01], 'rewards.correct': [0.2, 0.4] });
    expect(existsSync(`${path}.tmp`)).toBe(false);
  });

  it('keeps every array one entry per step when metrics come and go', () => {
    const path = join(dir, 'training_stats.json');
    const w = new TrainingStatsWriter(path, { append: false });
    w.write({ step: 1, a: 1 });
    w.write({ step: 2, a: 2, rewards: { format: 1 } });
    w.write({ step: 3, rewards: { format: 0 } });
    expect(read(path)).toEqual({ step: [1, 2, 3], a: [1, 2, null], 'rewards.format': [null, 1, 0] });
    expect(w.length).toBe(3);
  });

  it('continues the file of a resumed run and replaces the steps it redoes', () => {
    const path = join(dir, 'training_stats.json');
    const first = new TrainingStatsWriter(path, { append: false });
    for (let step = 1; step <= 4; step++) first.write({ step, loss: step / 10 });
    // resumed from the checkpoint of step 2: steps 3 and 4 are trained again
    const resumed = new TrainingStatsWriter(path, { append: true });
    expect(resumed.length).toBe(4);
    resumed.write({ step: 3, loss: 0.33 });
    expect(read(path)).toEqual({ step: [1, 2, 3], loss: [0.1, 0.2, 0.33] });
  });

  it('starts empty when not appending, even over an old file', () => {
    const path = join(dir, 'training_stats.json');
    writeFileSync(path, '{"step":[1,2],"loss":[1,2]}');
    const w = new TrainingStatsWriter(path, { append: false });
    w.write({ step: 1, loss: 0.5 });
    expect(read(path)).toEqual({ step: [1], loss: [0.5] });
  });

  it('refuses to continue a file it cannot read, with GRPO_ERR_RESUME', () => {
    const path = join(dir, 'training_stats.json');
    for (const text of ['{not json', '[1,2]', '{"loss":[1]}', '{"step":[1,2],"loss":[1]}']) {
      writeFileSync(path, text);
      let caught: unknown;
      try {
        new TrainingStatsWriter(path, { append: true });
      } catch (err) {
        caught = err;
      }
      expect(isGrpoError(caught, 'GRPO_ERR_RESUME'), text).toBe(true);
      expect((caught as Error).message).toContain(path);
    }
  });

  it('needs a numeric step in every record', () => {
    const w = new TrainingStatsWriter(join(dir, 'training_stats.json'), { append: false });
    expect(() => w.write({ loss: 1 })).toThrow(/numeric step/);
  });
});
