/**
 * RewardPool's batched path for per-completion rewards: the completions of one prompt go to a
 * thread as one task (scored one by one, each under its own timeout), and a failure in the middle
 * is charged to that completion alone, with the same attempts and logs as a call of its own.
 * Real piscina threads on tests/fixtures/rewards/chaos-task.js (build first: `npx tsc -p .`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { GrpoError } from '../../src/shared/errors.js';
import type { ScoreItem } from '../../src/rollout-worker/reward-pool.js';
import { chaosPool, closePools, rejection } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'reward-pool-each-'));
afterEach(closePools);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** One group: every completion after the same prompt. */
function group(...completions: string[]): ScoreItem[] {
  return completions.map((completion) => ({ prompt: '1+1=', completion, meta: { answer: '2' } }));
}

describe('RewardPool: a per-completion reward on a group', () => {
  it('scores a group in one thread task per thread, in item order', async () => {
    const texts = ['a', 'bb', 'async', 'dddd', 'eeeee', 'ffffff'];
    const one = chaosPool();
    expect((await one.pool.score(group(...texts))).rewards.map((r) => r.chaos)).toEqual([1, 2, 7, 4, 5, 6]);
    expect(one.pool.stats()).toEqual({ calls: 1, failedAttempts: 0, terminatedThreads: 0 });
    const two = chaosPool({ threads: 2, rewardWeights: { double: 1 } });
    const out = await two.pool.score(group(...texts));
    expect(out.rewards).toEqual(texts.map((t) => ({ chaos: t === 'async' ? 7 : t.length, double: 2 * t.length })));
    expect(two.pool.stats().calls).toBe(4); // two rewards x two chunks of three
  });

  it('charges a throw in the middle to that completion: its retries and logs, the others scored once', async () => {
    const { pool, logs } = chaosPool({ retries: 2 });
    const err = await rejection(pool.score(group('ab', 'abc', 'throw', 'abcd')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect(err.message).toContain('reward chaos failed on item 2 in all 3 attempts');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_THREW');
    expect(logs.filter((l) => l.event === 'reward_error').map((l) => [l.item, l.attempt])).toEqual([
      [2, 1],
      [2, 2],
      [2, 3],
    ]);
  });

  it('keeps the scores before a failure and goes on with the rest as one task', async () => {
    const { pool } = chaosPool();
    const out = await pool.score(group('ab', 'flaky', 'abc', 'abcd', 'abcde'));
    expect(out.rewards.map((r) => r.chaos)).toEqual([2, 3, 3, 4, 5]);
    expect(out.errors).toEqual([expect.objectContaining({ reward: 'chaos', code: 'GRPO_ERR_REWARD_NAN' })]);
    // the group (fails at item 1), item 1's retry, items 2-4 as one task
    expect(pool.stats()).toEqual({ calls: 3, failedAttempts: 1, terminatedThreads: 0 });
  });

  it('kills a hang in the middle after its own timeout and rescores the completions before it', async () => {
    const { pool, logs } = chaosPool();
    const marker = join(scratch, 'hang-once');
    const out = await pool.score(group('ab', 'abc', `hang-once:${marker}`, 'abcd'));
    expect(out.rewards.map((r) => r.chaos)).toEqual([2, 3, 5, 4]);
    expect(out.errors.map((e) => e.code)).toEqual(['GRPO_ERR_REWARD_TIMEOUT']);
    expect(logs.filter((l) => l.event === 'reward_error').map((l) => l.item)).toEqual([2]);
    // the group (killed at item 2), items 0 and 1 again as one task (their scores died with the
    // thread), item 2's retry, item 3
    expect(pool.stats()).toEqual({ calls: 4, failedAttempts: 1, terminatedThreads: 1 });
  });

  it('times each completion on its own: a group of slowish completions does not add up to a timeout', async () => {
    const { pool } = chaosPool({ timeoutMs: 1000, graceMs: 500, retries: 0 });
    // three completions of 400 ms each (busy-waiting): 1.2 s in all, each well inside its 1 s
    const out = await pool.score(group('slow', 'slow', 'slow'));
    expect(out.rewards.map((r) => r.chaos)).toEqual([1, 1, 1]);
    expect(pool.stats()).toEqual({ calls: 1, failedAttempts: 0, terminatedThreads: 0 });
  });
});
