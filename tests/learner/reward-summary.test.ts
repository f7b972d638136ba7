import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatRewardTrends, rewardTrends, rewardTrendsOfFile } from '../../src/learner/reward-summary.js';

const row = (total: number, rewards: Record<string, number | null>) => ({ rewardMean: total, rewards });

describe('reward trends for summary.json', () => {
  it('averages the first and the last fifth of the steps (at least one step each)', () => {
    const rows = Array.from({ length: 10 }, (_, i) => row(i, { a: 10 * i, b: i % 2 }));
    expect(rewardTrends(rows)).toEqual({
      total: { first: 0.5, last: 8.5 }, // steps 0-1 and 8-9
      a: { first: 5, last: 85 },
      b: { first: 0.5, last: 0.5 },
    });
    expect(rewardTrends([row(2, { a: 1 })])).toEqual({ total: { first: 2, last: 2 }, a: { first: 1, last: 1 } });
    expect(rewardTrends([])).toEqual({});
  });

  it('skips values that were not measured and says null when none was', () => {
    const rows = [row(1, { a: null, b: 1 }), row(3, { b: 2 }), row(NaN, { a: 4 })];
    expect(rewardTrends(rows)).toEqual({ total: { first: 1, last: null }, a: { first: null, last: 4 }, b: { first: 1, last: null } });
    expect(formatRewardTrends(rewardTrends(rows))).toBe('total 1.000 -> n/a, a n/a -> 4.000, b 1.000 -> n/a');
  });

  it('reads metrics.jsonl, and gives {} for a run that logged no step', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reward-trends-'));
    try {
      const file = join(dir, 'metrics.jsonl');
      await writeFile(file, `${JSON.stringify(row(1, { a: 2 }))}\n${JSON.stringify(row(3, { a: 4 }))}\n`);
      expect(await rewardTrendsOfFile(file)).toEqual({ total: { first: 1, last: 3 }, a: { first: 2, last: 4 } });
      expect(await rewardTrendsOfFile(join(dir, 'missing.jsonl'))).toEqual({});
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
