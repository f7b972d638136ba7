/**
 * The fill-in judge: a tiny training run, the checkpoint it writes, scoring (clean above
 * corrupted, cached, no tensor leaks), the task's judge reward, and the judge inside a real
 * piscina reward thread (the thread starts its own tensor engine). The pool runs the compiled
 * thread file from dist/: build first (`npx tsc -p .`; `npm test` does).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RewardPool } from '../../../src/rollout-worker/reward-pool.js';
import { initEngine } from '../../../src/engine/backend.js';
import { tf } from '../../../src/engine/tf.js';
import { Judge, checkJudgeCheckpoint, sharedJudge } from '../../../src/tasks/fill-in/judge.js';
import { corruptFill, trainJudge, type JudgeTrainResult } from '../../../src/offline/judge-train.js';
import { Rng } from '../../../src/shared/rng.js';
import { createFillIn, type FillInMeta } from '../../../src/tasks/fill-in/fill-in.js';

const scratch = mkdtempSync(join(tmpdir(), 'judge-test-'));
const dir = join(scratch, 'judge');
let trained: JudgeTrainResult;
let judge: Judge;

beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} });
  // 100 steps of 16 sentences: a few seconds, and already far better than chance
  trained = await trainJudge({ out: dir, steps: 100, batchSize: 16, lr: 3e-3, modelSize: 'tiny', seed: 5, evalPairs: 50 });
  judge = await Judge.load(dir);
});
afterAll(() => {
  judge?.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

// clean sentences of the grammar, each against a copy with one letter wrong
const PAIRS: [string, string][] = [
  ['the shy fox chases the old hen.', 'the shy fox chases the old hxn.'],
  ['the duck swims by the river.', 'the duck swims by the rivqr.'],
  ['the big cow naps in the barn.', 'the big cow naps in the bacn.'],
  ['the wolf sees the quiet lamb near the pond.', 'the wolf sees the quiet lamb near the pold.'],
  ['the frog sings today.', 'the frog singz today.'],
];

describe('trainJudge', () => {
  it('writes a judge checkpoint with its held-out check', () => {
    expect(trained.step).toBe(100);
    expect(Number.isFinite(trained.loss)).toBe(true);
    const state = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ phase: 'judge', step: 100, corpus: { task: 'fill-in', seed: 5 }, eval: { pairs: 50 } });
    expect(state.eval.pairwiseAccuracy).toBe(trained.eval.pairwiseAccuracy);
    expect(trained.eval.pairwiseAccuracy).toBeGreaterThan(0.8); // chance is 0.5
    expect(trained.eval.meanClean).toBeGreaterThan(trained.eval.meanCorrupted);
    expect(() => checkJudgeCheckpoint(dir)).not.toThrow();
  });

  it('corrupts exactly one masked letter', () => {
    const task = createFillIn({ seed: 2 });
    const rng = new Rng(1);
    for (let i = 0; i < 50; i++) {
      const ex = task.example('test', i);
      const { text } = ex.meta as FillInMeta;
      const bad = corruptFill(rng, ex.prompt, text);
      const diff = [...text].flatMap((c, j) => (c === bad[j] ? [] : [j]));
      expect(diff).toHaveLength(1);
      expect(ex.prompt[diff[0]]).toBe('_');
    }
  });

  it('rejects bad options with GRPO_ERR_JUDGE_OPTIONS', async () => {
    const base = { out: join(scratch, 'bad'), steps: 1, batchSize: 2, lr: 1e-3, modelSize: 'tiny' as const, seed: 1, evalPairs: 2 };
    await expect(trainJudge({ ...base, steps: 0 })).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_OPTIONS' });
    await expect(trainJudge({ ...base, lr: -1 })).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_OPTIONS' });
  });
});

describe('Judge', () => {
  it('scores a clean sentence above the same sentence with one letter wrong', async () => {
    const clean = await judge.score(PAIRS.map((p) => p[0]));
    const bad = await judge.score(PAIRS.map((p) => p[1]));
    PAIRS.forEach((_, i) => expect(clean[i], PAIRS[i][0]).toBeGreaterThan(bad[i]));
    for (const s of [...clean, ...bad]) expect(s > 0 && s <= 1).toBe(true);
  });

  it('is exp(-mean NLL), batch-independent, cached and leaks no tensors', async () => {
    const texts = PAIRS.map((p) => p[0]);
    const nll = await judge.meanNll(texts);
    const fresh = await Judge.load(dir); // an empty cache
    try {
      const one = await fresh.score([texts[2]]);
      const all = await fresh.score(texts, 2); // batches of 2, padded differently
      expect(one[0]).toBeCloseTo(Math.exp(-nll[2]), 5);
      all.forEach((s, i) => expect(s).toBeCloseTo(Math.exp(-nll[i]), 5));
      const before = tf.memory().numTensors;
      await fresh.score(['the cat runs fast.', ...texts]);
      await fresh.meanNll(texts);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      fresh.dispose();
    }
  });

  it('fails to load with GRPO_ERR_JUDGE_CHECKPOINT when missing or not a judge', async () => {
    await expect(Judge.load(join(scratch, 'missing'))).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_CHECKPOINT' });
    const other = join(scratch, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'config.json'), readFileSync(join(dir, 'config.json')));
    writeFileSync(join(other, 'trainer_state.json'), JSON.stringify({ step: 3, policyVersion: 0, phase: 'sft' }));
    await expect(Judge.load(other)).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_CHECKPOINT' });
    await expect(sharedJudge(other)).rejects.toMatchObject({ code: 'GRPO_ERR_JUDGE_CHECKPOINT' });
  });
});

describe('the fill-in judge reward', () => {
  // created once the judge exists (describe bodies run before beforeAll)
  let reward: ReturnType<typeof createFillIn>['rewards'][number];
  let ex: ReturnType<ReturnType<typeof createFillIn>['example']>;
  let text: string;
  let wrongFill: string;
  beforeAll(() => {
    const task = createFillIn({ seed: 4, options: { judge_checkpoint: dir } });
    reward = task.rewards.find((r) => r.name === 'judge')!;
    ex = task.example('test', 1);
    text = (ex.meta as FillInMeta).text;
    wrongFill = corruptFill(new Rng(9), ex.prompt, text);
  });

  it('scores fillings with the judge and anything else 0; the group form agrees', async () => {
    const good = await reward.fn(ex.prompt, text, ex.meta);
    const wrong = await reward.fn(ex.prompt, wrongFill, ex.meta);
    expect(good).toBeCloseTo((await judge.score([text]))[0], 6);
    expect(wrong).toBeGreaterThan(0);
    expect(await reward.fn(ex.prompt, `${text} `, ex.meta)).toBe(0); // not a filling
    expect(await reward.fn(ex.prompt, 'the cat runs fast.', ex.meta)).toBe(0);
    const group = await reward.group!(ex.prompt, [text, 'x', wrongFill], ex.meta);
    expect(group).toEqual([good, 0, wrong]);
  });

  it('runs in a piscina reward thread, with its own engine and judge, and matches the main thread', async () => {
    const pool = new RewardPool({ task: 'fill-in', taskSeed: 4, taskOptions: { judge_checkpoint: dir }, threads: 1, timeoutMs: 60_000 });
    try {
      const info = await pool.ready();
      expect(info.rewards.map((r) => r.name)).toEqual(['judge']);
      const completions = [text, wrongFill, 'nonsense'];
      const r = await pool.score(completions.map((completion) => ({ prompt: ex.prompt, completion, meta: ex.meta })));
      const expected = [await reward.fn(ex.prompt, text, ex.meta), await reward.fn(ex.prompt, wrongFill, ex.meta), 0];
      r.rewards.forEach((row, i) => expect(row.judge).toBeCloseTo(expected[i], 5));
      expect(pool.stats().terminatedThreads).toBe(0);
    } finally {
      await pool.close();
    }
  });
});
