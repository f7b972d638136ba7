import { describe, expect, it } from 'vitest';
import { ReplayBuffer, groupRewardStd } from '../../src/learner/replay.js';
import type { GroupRollout } from '../../src/shared/protocol.js';

/** A group whose completions score `rewards` (one reward function each, by name). */
function group(id: string, version: number, ...rewards: Record<string, number | null>[]): GroupRollout {
  return {
    groupId: id,
    policyVersion: version,
    promptTokens: [1],
    completions: rewards.map((r) => ({ tokens: [3], logprobs: [-1], text: 'x', rewards: r, finishReason: 'stop' as const })),
  };
}
const flat = (id: string, v = 0) => group(id, v, { ok: 1 }, { ok: 1 }, { ok: 1 });
const spread = (id: string, v: number, hi: number) => group(id, v, { ok: 0 }, { ok: hi }, { ok: 0 });

describe('groupRewardStd', () => {
  it('uses the weighted totals as the step batch does', () => {
    expect(groupRewardStd(group('a', 0, { ok: 1 }, { ok: 0 }), {})).toBeCloseTo(Math.SQRT1_2, 12); // missing weight = 1
    expect(groupRewardStd(group('a', 0, { ok: 1, f: 0 }, { ok: 0, f: 1 }), { ok: 1, f: 1 })).toBe(0); // totals equal
    expect(groupRewardStd(group('a', 0, { ok: 1, f: 0 }, { ok: 0, f: 1 }), { ok: 1, f: 0 })).toBeGreaterThan(0); // weight 0 left out
    expect(groupRewardStd(group('a', 0, { ok: 1 }, { ok: null }, { ok: 1 }), {})).toBe(0); // unscored left out
    expect(groupRewardStd(group('a', 0, { ok: 1 }, { ok: 1 + 1e-10 }), {})).toBe(0); // within the flat tolerance
    expect(groupRewardStd(group('a', 0, { ok: 1 }), {})).toBe(0);
  });
});

describe('ReplayBuffer', () => {
  it('swaps zero-variance groups for stored high-variance ones, largest spread first, each once', () => {
    const buf = new ReplayBuffer({ size: 8, maxAge: 10, rewardWeights: {} });
    // nothing stored yet: the batch is unchanged; its high-variance groups are stored for later
    const first = [spread('s1', 0, 1), flat('f1'), spread('s2', 0, 3)];
    expect(buf.substitute(first, 0)).toEqual({ groups: first, replayed: 0, stored: 2 });
    const r = buf.substitute([flat('f2', 1), spread('s3', 1, 2), flat('f3', 1), flat('f4', 1)], 1);
    expect(r.groups.map((g) => g.groupId)).toEqual(['s2', 's3', 's1', 'f4']); // s2 (spread 3) before s1; f4 finds the buffer empty
    expect(r.replayed).toBe(2);
    expect(r.stored).toBe(1); // s3, stored after the swap (never twice in one batch)
    expect(buf.substitute([flat('f5', 2)], 2).groups.map((g) => g.groupId)).toEqual(['s3']);
    expect(buf.size).toBe(0);
  });

  it('is bounded, keeping the newest groups, and drops groups older than maxAge', () => {
    const buf = new ReplayBuffer({ size: 2, maxAge: 3, rewardWeights: {} });
    buf.substitute([spread('a', 0, 5), spread('b', 1, 1), spread('c', 2, 1)], 2);
    expect(buf.size).toBe(2); // a, the oldest, was evicted despite its larger spread
    expect(buf.substitute([flat('f')], 3).groups[0].groupId).toBe('c'); // b and c tie: the newest
    // b was sampled at version 1: at version 5 it is 4 versions old, past maxAge 3
    const r = buf.substitute([flat('g', 5)], 5);
    expect(r).toMatchObject({ replayed: 0, stored: 0 });
    expect(r.groups[0].groupId).toBe('g');
  });
});
