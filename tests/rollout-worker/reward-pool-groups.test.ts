/**
 * RewardPool with group rewards and a reward module, on real piscina threads (build first:
 * `npx tsc -p .`). The module is tests/fixtures/rewards/group-module.mjs; the keywords task
 * brings a built-in group reward (diversity).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GrpoError } from '../../src/shared/errors.js';
import { RewardPool } from '../../src/rollout-worker/reward-pool.js';
import type { RewardPoolOptions, ScoreItem } from '../../src/rollout-worker/reward-pool.js';
import { createTask } from '../../src/tasks/index.js';
import { closePools, loggedPool, rejection, type LogLine } from './helpers.js';

const MODULE = 'tests/fixtures/rewards/group-module.mjs';

afterEach(closePools);

function pool(opts: Partial<RewardPoolOptions> = {}): { pool: RewardPool; logs: LogLine[] } {
  return loggedPool({ task: 'arithmetic', taskSeed: 1, threads: 2, timeoutMs: 2_000, graceMs: 200, retries: 1, rewardModule: MODULE, ...opts });
}

const group = (prompt: string, ...completions: string[]): ScoreItem[] => completions.map((completion) => ({ prompt, completion, meta: { answer: '7' } }));

describe('RewardPool: reward module', () => {
  it('adds the module rewards after the task rewards (named exports alphabetically), with their weights and scopes', async () => {
    const { pool: p, logs } = pool();
    expect(await p.ready()).toEqual({
      taskName: 'arithmetic',
      rewards: [
        { name: 'correct', weight: 1 },
        { name: 'group_async', weight: 2, scope: 'group' },
        { name: 'group_size', weight: 0.5, scope: 'group' },
        { name: 'plain', weight: 1 },
      ],
    });
    expect(logs.find((l) => l.event === 'reward_pool_ready')).toMatchObject({ task: 'arithmetic', remote: null });
  });

  it('calls a group reward once per group with all its completions, sync and async alike', async () => {
    const { pool: p } = pool();
    const out = await p.score(group('3+4=', '7', '8', '77'));
    expect(out.errors).toEqual([]);
    expect(out.rewards).toEqual([
      { correct: 1, plain: 1, group_size: 3, group_async: 1.5 },
      { correct: 0, plain: 1, group_size: 3, group_async: 1.5 },
      { correct: 0, plain: 2, group_size: 3, group_async: 2.5 },
    ]);
  });

  it('splits one score() call into groups by prompt and meta', async () => {
    const { pool: p } = pool();
    const items = [...group('1+1=', 'a', 'b'), { prompt: '2+2=', completion: 'c', meta: { answer: '4' } }, ...group('1+1=', 'd')];
    const out = await p.score(items);
    expect(out.rewards.map((r) => r.group_size)).toEqual([3, 3, 1, 3]);
  });

  it('applies reward_weights to module rewards and rejects a weight naming none', async () => {
    const { pool: p } = pool({ rewardWeights: { plain: 0, group_size: 3 } });
    expect((await p.ready()).rewards.map((r) => [r.name, r.weight])).toEqual([
      ['correct', 1],
      ['group_async', 2],
      ['group_size', 3],
    ]);
    const { pool: bad } = pool({ rewardWeights: { plian: 1 } });
    expect((await rejection(bad.ready())).code).toBe('GRPO_ERR_UNKNOWN_REWARD');
  });

  it('fails with GRPO_ERR_REWARD_MODULE for a module that does not exist', async () => {
    const { pool: p } = pool({ rewardModule: 'tests/fixtures/rewards/missing.mjs' });
    const err = await rejection(p.ready());
    expect(err.code).toBe('GRPO_ERR_REWARD_MODULE');
    expect(err.message).toContain('missing.mjs');
  });
});

describe('RewardPool: misbehaving group rewards', () => {
  const chaos = (prompt: string) => {
    const { pool: p, logs } = pool({ rewardWeights: { chaos_group: 1, plain: 0, group_size: 0, group_async: 0 }, timeoutMs: 300, graceMs: 100 });
    return { run: () => p.score(group(prompt, 'x', 'y', 'z')), logs };
  };

  it('a wrong number of scores is GRPO_ERR_REWARD_SHAPE, retried, then GRPO_ERR_REWARD_FAILED', async () => {
    const { run, logs } = chaos('short');
    const err = await rejection(run());
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_SHAPE');
    expect(err.message).toContain('the group of items 0,1,2');
    const attempts = logs.filter((l) => l.event === 'reward_error');
    expect(attempts.map((l) => [l.code, l.items])).toEqual([
      ['GRPO_ERR_REWARD_SHAPE', [0, 1, 2]],
      ['GRPO_ERR_REWARD_SHAPE', [0, 1, 2]],
    ]);
  });

  it('NaN for one completion, a throw and a hang are coded errors, never a 0', async () => {
    const nan = await rejection(chaos('nan').run());
    expect((nan.cause as GrpoError).code).toBe('GRPO_ERR_REWARD_NAN');
    expect((nan.cause as GrpoError).message).toContain('for completion 2');
    expect(((await rejection(chaos('throw').run())).cause as GrpoError).code).toBe('GRPO_ERR_REWARD_THREW');
    expect(((await rejection(chaos('sleep').run())).cause as GrpoError).code).toBe('GRPO_ERR_REWARD_TIMEOUT');
  });

  it('scores a well-behaved group with the same reward', async () => {
    const out = await chaos('fine').run();
    expect(out.rewards.map((r) => r.chaos_group)).toEqual([1, 1, 1]);
  });
});

describe('RewardPool: the keywords task', () => {
  it('scores every component by name, diversity over the whole group', async () => {
    const task = createTask('keywords', { seed: 2 });
    const ex = task.example('train', 0);
    const [k1, k2] = (ex.meta as { keywords: string[] }).keywords;
    const { pool: p } = pool({ task: 'keywords', taskSeed: 2, rewardModule: null });
    const same = `the red ${k1} sees the ${k2}.`;
    const out = await p.score([same, same, `${k1} ${k1} ${k1}`].map((completion) => ({ prompt: ex.prompt, completion, meta: ex.meta })));
    expect(Object.keys(out.rewards[0])).toEqual(['keywords', 'length', 'repetition', 'format', 'diversity']);
    expect(out.rewards[0]).toMatchObject({ keywords: 1, length: 1, repetition: 1, format: 1 });
    expect(out.rewards[2]).toMatchObject({ keywords: 0.5, format: 0, repetition: 0.5 });
    // the two equal completions overlap fully with each other and little with the third
    expect(out.rewards[0].diversity).toBeCloseTo(out.rewards[1].diversity!, 12);
    expect(out.rewards[2].diversity!).toBeGreaterThan(out.rewards[0].diversity!);
  });
});
