/**
 * RewardPool with real piscina threads. The pool runs the compiled thread file from dist/, so
 * build first (`npx tsc -p .`; `npm test` does). Misbehaving rewards come from
 * tests/fixtures/rewards/chaos-task.js, whose completion text picks the misbehaviour.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { GrpoError, isGrpoError } from '../../src/shared/errors.js';
import { RewardPool } from '../../src/rollout-worker/reward-pool.js';
import type { ScoreItem } from '../../src/rollout-worker/reward-pool.js';
import { createTask } from '../../src/tasks/index.js';
import { CHAOS, chaosPool, closePools, loggedPool, rejection } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'reward-pool-test-'));

afterEach(closePools);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function items(...completions: string[]): ScoreItem[] {
  return completions.map((completion, i) => ({ prompt: `p${i}`, completion, meta: { answer: '1' } }));
}

describe('RewardPool: good rewards', () => {
  it('scores the built-in arithmetic task by name with its default rewards', async () => {
    const task = createTask('arithmetic', { seed: 3 });
    const { pool, logs } = loggedPool({ task: 'arithmetic', taskSeed: 3 });
    expect(await pool.ready()).toEqual({ taskName: 'arithmetic', rewards: [{ name: 'correct', weight: 1 }] });
    const ex = [0, 1, 2].map((i) => task.example('train', i));
    const answers = ex.map((e) => (e.meta as { answer: string }).answer);
    const out = await pool.score([
      { prompt: ex[0].prompt, completion: answers[0], meta: ex[0].meta },
      { prompt: ex[1].prompt, completion: `${answers[1]}9`, meta: ex[1].meta },
      { prompt: ex[2].prompt, completion: answers[2], meta: ex[2].meta },
    ]);
    expect(out).toEqual({ rewards: [{ correct: 1 }, { correct: 0 }, { correct: 1 }], errors: [] });
    expect(logs.map((l) => l.event)).toEqual(['reward_pool_ready']);
  });

  it('awaits async rewards (a promise-returning function and an async function)', async () => {
    const { pool } = chaosPool({ rewardWeights: { async_len: 1 } });
    const out = await pool.score(items('async', 'abcd'));
    expect(out.rewards).toEqual([
      { chaos: 7, async_len: 5.5 },
      { chaos: 4, async_len: 4.5 },
    ]);
    expect(out.errors).toEqual([]);
  });

  it('applies reward_weights: zero-weight rewards never run, a weight enables a default-0 reward', async () => {
    const { pool } = chaosPool({ rewardWeights: { chaos: 0, double: 0.5, async_len: 2 } });
    expect((await pool.ready()).rewards).toEqual([
      { name: 'double', weight: 0.5 },
      { name: 'async_len', weight: 2 },
    ]);
    // "throw" would make chaos fail: it is not run at weight 0
    const out = await pool.score(items('throw', 'ab'));
    expect(out.rewards).toEqual([
      { double: 10, async_len: 5.5 },
      { double: 4, async_len: 2.5 },
    ]);
  });

  it('rejects a weight that names no reward, and a module that exports no task, with coded errors', async () => {
    const { pool } = chaosPool({ rewardWeights: { chaoss: 1 } });
    expect((await rejection(pool.ready())).code).toBe('GRPO_ERR_UNKNOWN_REWARD');
    expect((await rejection(pool.score(items('a')))).code).toBe('GRPO_ERR_UNKNOWN_REWARD');
    const { pool: empty } = chaosPool({ task: 'tests/fixtures/rewards/no-factory.js' });
    const err = await rejection(empty.ready());
    expect(err.code).toBe('GRPO_ERR_UNKNOWN_TASK');
    expect(err.message).toContain('no-factory.js');
  });

  it('spreads many calls over several threads and keeps item order', async () => {
    const { pool } = chaosPool({ threads: 2, rewardWeights: { double: 1 } });
    const texts = Array.from({ length: 40 }, (_, i) => 'x'.repeat(i % 7) + (i % 3 === 0 ? 'async' : ''));
    const out = await pool.score(items(...texts));
    expect(out.rewards).toEqual(texts.map((t) => ({ chaos: t === 'async' ? 7 : t.length, double: 2 * t.length })));
  });

  it('validates its options', () => {
    for (const bad of [{ threads: 0 }, { timeoutMs: 1.5 }, { retries: -1 }, { graceMs: -5 }, { taskSeed: NaN }]) {
      let err: unknown = null;
      try {
        new RewardPool({ task: CHAOS, taskSeed: 1, ...bad });
      } catch (e) {
        err = e;
      }
      expect(isGrpoError(err, 'GRPO_ERR_REWARD_POOL_OPTIONS'), JSON.stringify(bad)).toBe(true);
    }
  });
});

describe('RewardPool: failing rewards', () => {
  it('retries a throwing reward, logs each attempt, then fails with GRPO_ERR_REWARD_FAILED', async () => {
    const { pool, logs } = chaosPool({ retries: 2 });
    const err = await rejection(pool.score(items('ok', 'throw')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect(err.message).toContain('reward chaos failed on item 1 in all 3 attempts');
    expect(err.message).toContain('GRPO_ERR_REWARD_THREW');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_THREW');
    const attempts = logs.filter((l) => l.event === 'reward_error');
    expect(attempts.map((l) => [l.code, l.reward, l.item, l.attempt])).toEqual([
      ['GRPO_ERR_REWARD_THREW', 'chaos', 1, 1],
      ['GRPO_ERR_REWARD_THREW', 'chaos', 1, 2],
      ['GRPO_ERR_REWARD_THREW', 'chaos', 1, 3],
    ]);
    expect(logs.filter((l) => l.event === 'reward_failed')).toHaveLength(1);
  });

  it('reports a rejected promise and a throw caused by meta as GRPO_ERR_REWARD_THREW', async () => {
    const { pool } = chaosPool({ retries: 0 });
    expect(((await rejection(pool.score(items('reject')))).cause as GrpoError).code).toBe('GRPO_ERR_REWARD_THREW');
    const failing = [{ prompt: '1+1=', completion: '2', meta: { fail: true } }];
    expect(((await rejection(pool.score(failing))).cause as GrpoError).message).toContain('meta asked chaos to fail on 1+1=');
  });

  it('reports NaN as GRPO_ERR_REWARD_NAN, never as 0', async () => {
    const { pool } = chaosPool();
    const err = await rejection(pool.score(items('nan')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_NAN');
  });

  it('returns a value that succeeded on retry, with the failed attempt in errors', async () => {
    const { pool } = chaosPool();
    const out = await pool.score(items('flaky', 'abc'));
    expect(out.rewards).toEqual([{ chaos: 3 }, { chaos: 3 }]);
    expect(out.errors).toHaveLength(1);
    expect(out.errors[0]).toMatchObject({ reward: 'chaos', code: 'GRPO_ERR_REWARD_NAN' });
  });

  it('stops a busy-looping reward by terminating its thread, and keeps working afterwards', async () => {
    const { pool, logs } = chaosPool();
    const err = await rejection(pool.score(items('hang')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_TIMEOUT');
    expect(err.message).toContain('terminated');
    expect(pool.stats().terminatedThreads).toBe(2); // the first attempt and its retry
    expect(logs.filter((l) => l.event === 'reward_error').map((l) => l.code)).toEqual([
      'GRPO_ERR_REWARD_TIMEOUT',
      'GRPO_ERR_REWARD_TIMEOUT',
    ]);
    expect(await pool.score(items('abc', 'async'))).toEqual({ rewards: [{ chaos: 3 }, { chaos: 7 }], errors: [] });
  });

  it('charges a hang only to the hung call: the other items of the score() are not failures', async () => {
    const { pool } = chaosPool();
    const marker = join(scratch, 'hang-once');
    const out = await pool.score(items(`hang-once:${marker}`, 'ab', 'abc', 'abcd'));
    expect(out.rewards).toEqual([{ chaos: 5 }, { chaos: 2 }, { chaos: 3 }, { chaos: 4 }]);
    expect(out.errors.map((e) => e.code)).toEqual(['GRPO_ERR_REWARD_TIMEOUT']);
    // four prompts in one task (killed at item 0), item 0's retry, items 1-3 as one task
    expect(pool.stats()).toEqual({ calls: 3, failedAttempts: 1, terminatedThreads: 1 });
  });

  it('times out an async reward in its thread, and a sync reward that returns too late, without killing threads', async () => {
    const { pool } = chaosPool({ timeoutMs: 250, graceMs: 1000, retries: 0 });
    for (const text of ['sleep', 'slow']) {
      const err = await rejection(pool.score(items(text)));
      expect((err.cause as GrpoError).code, text).toBe('GRPO_ERR_REWARD_TIMEOUT');
      expect(err.message).toContain('250 ms timeout');
    }
    expect(pool.stats().terminatedThreads).toBe(0);
  });

  it('reports a thread that exits as GRPO_ERR_REWARD_THREAD and replaces it', async () => {
    const { pool } = chaosPool({ retries: 0 });
    const err = await rejection(pool.score(items('exit')));
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_THREAD');
    expect((await pool.score(items('abc'))).rewards).toEqual([{ chaos: 3 }]);
  });
});

describe('RewardPool: close', () => {
  it('rejects calls in flight and later calls with GRPO_ERR_REWARD_POOL_CLOSED', async () => {
    const { pool } = chaosPool({ timeoutMs: 5000 });
    await pool.ready();
    const pending = rejection(pool.score(items('sleep')));
    await new Promise((r) => setTimeout(r, 50));
    await pool.close();
    expect((await pending).code).toBe('GRPO_ERR_REWARD_POOL_CLOSED');
    expect((await rejection(pool.score(items('a')))).code).toBe('GRPO_ERR_REWARD_POOL_CLOSED');
  });
});
