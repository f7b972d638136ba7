/**
 * RewardPool.scoreGroups: the groups a worker finished together are scored in one thread task per
 * reward and thread, yet each group fares as if scored alone: its scores, its retries, and a
 * failure that rejects it alone. Real piscina threads on tests/fixtures/rewards/chaos-task.js and
 * the group reward module (build first: `npx tsc -p .`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { GrpoError } from '../../src/shared/errors.js';
import type { ScoreItem, ScoreResult } from '../../src/rollout-worker/reward-pool.js';
import { chaosPool, closePools, loggedPool } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'reward-pool-batch-'));
afterEach(closePools);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const group = (prompt: string, ...completions: string[]): ScoreItem[] => completions.map((completion) => ({ prompt, completion, meta: { answer: '7' } }));

function fulfilled(r: PromiseSettledResult<ScoreResult>): ScoreResult {
  if (r.status !== 'fulfilled') throw new Error(`expected scores, got ${String(r.reason)}`);
  return r.value;
}

describe('RewardPool.scoreGroups', () => {
  it('scores several groups in one task per thread, each as score() scores it alone', async () => {
    const groups = [group('a', 'x', 'yy'), group('b', 'async', 'zzzz', 'w'), group('c', 'vvvvv')];
    const { pool } = chaosPool({ rewardWeights: { double: 1 } });
    const out = await pool.scoreGroups(groups, ['g-a', 'g-b', 'g-c']);
    expect(pool.stats()).toEqual({ calls: 2, failedAttempts: 0, terminatedThreads: 0 }); // two rewards, one task each
    const alone = chaosPool({ rewardWeights: { double: 1 } }).pool;
    for (const [g, items] of groups.entries()) expect(fulfilled(out[g])).toEqual(await alone.score(items));
    const two = chaosPool({ threads: 2 });
    await two.pool.scoreGroups(groups);
    expect(two.pool.stats().calls).toBe(2); // the six completions in two chunks of three
  });

  it('rejects only the group whose reward fails, spends no more calls on it, and names it in the logs', async () => {
    const { pool, logs } = chaosPool({ retries: 1 });
    const out = await pool.scoreGroups([group('a', 'ab'), group('b', 'throw', 'abc', 'abcd'), group('c', 'flaky', 'abcde')], ['g-a', 'g-b', 'g-c']);
    expect(fulfilled(out[0]).rewards).toEqual([{ chaos: 2 }]);
    expect(out[1].status).toBe('rejected');
    const err = (out[1] as PromiseRejectedResult).reason as GrpoError;
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect(err.message).toContain('reward chaos failed on item 0 in all 2 attempts');
    expect(fulfilled(out[2])).toEqual({ rewards: [{ chaos: 3 }, { chaos: 5 }], errors: [expect.objectContaining({ code: 'GRPO_ERR_REWARD_NAN' })] });
    expect(logs.filter((l) => l.event === 'reward_error').map((l) => [l.group, l.item, l.attempt])).toEqual([
      ['g-b', 0, 1],
      ['g-b', 0, 2],
      ['g-c', 0, 1],
    ]);
    expect(logs.find((l) => l.event === 'reward_failed')).toMatchObject({ group: 'g-b', item: 0 });
    // the task (fails at b's item 0), its retry (b gives up), the rest without b's items (fails
    // at c's flaky item), that item's retry, c's last item: b's "abc" and "abcd" never ran
    expect(pool.stats()).toEqual({ calls: 5, failedAttempts: 3, terminatedThreads: 0 });
  });

  it('kills a hang in one group after that call’s own timeout; the other groups keep their scores', async () => {
    const { pool } = chaosPool({ timeoutMs: 300, graceMs: 100, retries: 1 });
    const marker = join(scratch, 'hang-once');
    const out = await pool.scoreGroups([group('a', 'ab', 'abc'), group('b', 'hang'), group('c', `hang-once:${marker}`, 'abcd')]);
    expect(out.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(((out[1] as PromiseRejectedResult).reason as GrpoError).cause).toMatchObject({ code: 'GRPO_ERR_REWARD_TIMEOUT' });
    expect(fulfilled(out[0]).rewards).toEqual([{ chaos: 2 }, { chaos: 3 }]);
    expect(fulfilled(out[2])).toEqual({ rewards: [{ chaos: 5 }, { chaos: 4 }], errors: [expect.objectContaining({ code: 'GRPO_ERR_REWARD_TIMEOUT' })] });
    expect(pool.stats().terminatedThreads).toBe(3); // b's hang twice, c's hang-once once
  });

  it('gives a group reward one call per group, the groups of a call in one task', async () => {
    const { pool } = loggedPool({ task: 'arithmetic', taskSeed: 1, threads: 1, timeoutMs: 2_000, retries: 0, rewardModule: 'tests/fixtures/rewards/group-module.mjs' });
    const out = await pool.scoreGroups([group('3+4=', '7', '8', '77'), group('1+6=', '7')]);
    expect(fulfilled(out[0]).rewards.map((r) => r.group_size)).toEqual([3, 3, 3]);
    expect(fulfilled(out[1]).rewards).toEqual([{ correct: 1, plain: 1, group_size: 1, group_async: 1.5 }]);
    expect(pool.stats().calls).toBe(4); // one task per reward: correct, group_async, group_size, plain
  });

  it('takes empty groups and rejects a group of mixed prompts with a coded error', async () => {
    const { pool } = chaosPool();
    expect(await pool.scoreGroups([[], group('a', 'ab')])).toEqual([
      { status: 'fulfilled', value: { rewards: [], errors: [] } },
      { status: 'fulfilled', value: { rewards: [{ chaos: 2 }], errors: [] } },
    ]);
    await expect(pool.scoreGroups([[...group('a', 'x'), ...group('b', 'y')]])).rejects.toMatchObject({ code: 'GRPO_ERR_REWARD_INPUT' });
  });
});
