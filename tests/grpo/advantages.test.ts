import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { groupAdvantages, type GroupAdvantageOptions, type RewardsInput } from '../../src/grpo/index.js';
import { expectClose, expectCode, loadFixture } from './helpers.js';

interface AdvCase {
  name: string;
  inputs: {
    rewardsForm: 'totals' | 'functions' | 'record';
    rewards: RewardsInput;
    groupSize: number;
    opts: GroupAdvantageOptions;
  };
  expected: {
    advantages: number[];
    totals: (number | null)[];
    groupMean: (number | null)[];
    groupStd: number[];
    flatGroups: number[];
    fracRewardZeroStd: number;
    numUnscored: number;
  };
}

const golden = loadFixture<{ cases: AdvCase[] }>('advantages.json');

describe('groupAdvantages golden cases (tools/golden/grpo_golden.py)', () => {
  it('covers every scale, both std kinds and the three reward forms', () => {
    const opts = golden.cases.map((c) => c.inputs.opts);
    expect(new Set(opts.map((o) => o.scale))).toEqual(new Set(['group', 'batch', 'none']));
    expect(new Set(opts.map((o) => o.std))).toEqual(new Set(['sample', 'population']));
    expect(new Set(golden.cases.map((c) => c.inputs.rewardsForm))).toEqual(new Set(['totals', 'functions', 'record']));
  });

  for (const c of golden.cases) {
    it(c.name, () => {
      const r = groupAdvantages(c.inputs.rewards, c.inputs.groupSize, c.inputs.opts);
      expect(r.advantages).toBeInstanceOf(Float32Array);
      expectClose(r.advantages, c.expected.advantages, 1e-6, 1e-6, 'advantages');
      expectClose(r.totals, c.expected.totals, 1e-12, 1e-12, 'totals');
      expectClose(r.groupMean, c.expected.groupMean, 1e-12, 1e-12, 'groupMean');
      expectClose(r.groupStd, c.expected.groupStd, 1e-12, 1e-12, 'groupStd');
      expect(Array.from(r.flatGroups)).toEqual(c.expected.flatGroups);
      expect(r.fracRewardZeroStd).toBeCloseTo(c.expected.fracRewardZeroStd, 12);
      expect(r.numUnscored).toBe(c.expected.numUnscored);
      expect(r.advantages.every(Number.isFinite)).toBe(true);
    });
  }

  it('gives what docs/objective.md shows for its quick example', () => {
    const adv = groupAdvantages(
      { correct: [1, 0, 1, 0, 1, 1, 1, 1], format: [1, 1, null, 1, 1, 1, 1, 1] },
      4,
      { weights: { format: 0.1 } },
    );
    expect(Array.from(adv.advantages.subarray(4))).toEqual([0, 0, 0, 0]);
    expect(adv.advantages[0]).toBeGreaterThan(0);
    expect(adv.fracRewardZeroStd).toBe(0.5);
  });

  it('reproduces the seed documents example: [1, 0, 1, 0] -> +-0.866 with the sample std', () => {
    const r = groupAdvantages([1, 0, 1, 0], 4, { eps: 0 });
    expectClose(r.advantages, [0.866025, -0.866025, 0.866025, -0.866025], 1e-6);
    expect(r.groupStd[0]).toBeCloseTo(0.57735, 5);
  });
});

describe('groupAdvantages properties', () => {
  const arbRewards = fc
    .record({ groups: fc.integer({ min: 1, max: 6 }), size: fc.integer({ min: 2, max: 8 }) })
    .chain(({ groups, size }) =>
      fc.record({
        size: fc.constant(size),
        rewards: fc.array(
          fc.oneof(fc.double({ min: -100, max: 100, noNaN: true }), fc.constantFrom(0, 1), fc.constant(null)),
          { minLength: groups * size, maxLength: groups * size },
        ),
        scale: fc.constantFrom('group' as const, 'batch' as const, 'none' as const),
        std: fc.constantFrom('sample' as const, 'population' as const),
      }),
    );

  it('advantages sum to zero within each group, are finite, and unscored completions get 0', () => {
    fc.assert(
      fc.property(arbRewards, ({ size, rewards, scale, std }) => {
        const r = groupAdvantages(rewards, size, { scale, std });
        for (let g = 0; g < rewards.length / size; g++) {
          const block = Array.from(r.advantages.subarray(g * size, (g + 1) * size));
          const bound = 1e-5 * size * Math.max(1, ...block.map(Math.abs));
          expect(Math.abs(block.reduce((a, b) => a + b, 0))).toBeLessThanOrEqual(bound);
        }
        rewards.forEach((v, i) => v === null && expect(r.advantages[i]).toBe(0));
        expect(r.advantages.every(Number.isFinite)).toBe(true);
      }),
      { numRuns: 200, seed: 7 },
    );
  });

  it('identical rewards give exact zeros, never NaN, and count as zero-std groups', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.integer({ min: 2, max: 16 }), (v, size) => {
        for (const scale of ['group', 'batch', 'none'] as const) {
          const r = groupAdvantages(new Array(size).fill(v), size, { scale, eps: 0 });
          expect(Array.from(r.advantages)).toEqual(new Array(size).fill(0));
          expect(r.fracRewardZeroStd).toBe(1);
        }
      }),
      { numRuns: 50, seed: 11 },
    );
    // 0.1 + 0.2 and 0.3 differ in the last bit: still one flat group
    expect(Array.from(groupAdvantages([0.1 + 0.2, 0.3, 0.3, 0.3], 4).advantages)).toEqual([0, 0, 0, 0]);
  });

  it('scale none is r - mean, scale group divides by (std + eps)', () => {
    const none = groupAdvantages([1, 3, 10, 20], 2, { scale: 'none' });
    expectClose(none.advantages, [-1, 1, -5, 5], 0);
    const grp = groupAdvantages([1, 3, 10, 20], 2, { std: 'population', eps: 0 });
    expectClose(grp.advantages, [-1, 1, -1, 1], 1e-7);
  });
});

describe('groupAdvantages NaN handling and several reward functions', () => {
  it('NaN, null and undefined mean "could not score"; a completion nobody scored gets 0 and is left out', () => {
    const r = groupAdvantages([1, NaN, 0, undefined, 5, null, 5, 7], 4, { scale: 'none' });
    expect(Array.from(r.scored)).toEqual([1, 0, 1, 0, 1, 0, 1, 1]);
    expect(r.numUnscored).toBe(3);
    expectClose(r.advantages, [0.5, 0, -0.5, 0, -2 / 3, 0, -2 / 3, 4 / 3], 1e-6);
    expect(r.totals[1]).toBeNaN();
    expect(r.groupMean[0]).toBe(0.5);
  });

  it('the total is the weighted sum over the functions that scored', () => {
    const rewards = { correct: [1, 0, null, 1], format: [0.5, null, null, 1] };
    const r = groupAdvantages(rewards, 2, { weights: { format: 0.2 } });
    expectClose(r.totals, [1.1, 0, NaN, 1.2], 1e-12);
    expect(r.functionMeans).toEqual({ correct: 2 / 3, format: 0.75 });
    expect(r.flatGroups[1]).toBe(1); // one scored completion only
    const byPosition = groupAdvantages([[1, 0, null, 1], [0.5, null, null, 1]], 2, { weights: [1, 0.2] });
    expectClose(byPosition.totals, [1.1, 0, NaN, 1.2], 1e-12);
  });

  it('a group with no scored completion has NaN mean, zero advantages and counts as flat', () => {
    const r = groupAdvantages([null, null, 1, 2], 2);
    expect(r.groupMean[0]).toBeNaN();
    expect(Array.from(r.advantages.subarray(0, 2))).toEqual([0, 0]);
    expect(r.fracRewardZeroStd).toBe(0.5);
  });
});

describe('groupAdvantages bad input', () => {
  it('throws coded errors naming the problem', () => {
    expectCode(() => groupAdvantages([1, 2, 3], 2), 'GRPO_ERR_BAD_SHAPE', /3 rewards do not split into groups of 2/);
    expectCode(() => groupAdvantages([], 2), 'GRPO_ERR_BAD_SHAPE', /no rewards/);
    expectCode(() => groupAdvantages([1, 2], 1), 'GRPO_ERR_BAD_OPTION', /groupSize/);
    expectCode(() => groupAdvantages([1, 2], 1.5), 'GRPO_ERR_BAD_OPTION', /groupSize/);
    expectCode(() => groupAdvantages([1, Infinity], 2), 'GRPO_ERR_BAD_REWARD', /Infinity/);
    expectCode(() => groupAdvantages([1, '2' as unknown as number], 2), 'GRPO_ERR_BAD_REWARD', /"2"/);
    expectCode(() => groupAdvantages([[1, 2], [1]], 2), 'GRPO_ERR_BAD_SHAPE', /function 1 has 1 values/);
    expectCode(() => groupAdvantages([[1, 2], 3] as unknown as number[][], 2), 'GRPO_ERR_BAD_REWARD', /mix arrays/);
    expectCode(() => groupAdvantages({ a: [1, 2] }, 2, { weights: { b: 1 } }), 'GRPO_ERR_BAD_REWARD', /weight\(s\) for b/);
    expectCode(() => groupAdvantages({ a: [1, 2] }, 2, { weights: { a: NaN } }), 'GRPO_ERR_BAD_REWARD', /weight of reward function a/);
    expectCode(() => groupAdvantages([[1, 2]], 2, { weights: [1, 2] }), 'GRPO_ERR_BAD_OPTION', /weights must be an array of 1/);
    expectCode(() => groupAdvantages([1, 2], 2, { weights: [1] }), 'GRPO_ERR_BAD_OPTION', /already totals/);
    expectCode(() => groupAdvantages([1, 2], 2, { scale: 'std' as 'group' }), 'GRPO_ERR_BAD_OPTION', /scale/);
    expectCode(() => groupAdvantages([1, 2], 2, { eps: -1 }), 'GRPO_ERR_BAD_OPTION', /eps/);
    const stray = { normalize: true } as GroupAdvantageOptions;
    expectCode(() => groupAdvantages([1, 2], 2, stray), 'GRPO_ERR_BAD_OPTION', /unknown option/);
  });
});
