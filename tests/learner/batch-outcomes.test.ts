/** What a step batch reports per completion and over the step: advantages and sampled log-probs. */
import { describe, expect, it } from 'vitest';
import { buildStepBatch, type BatchOptions } from '../../src/learner/batch.js';
import type { Completion, GroupRollout } from '../../src/shared/protocol.js';

const OPTS: BatchOptions = {
  groupSize: 2,
  microBatchSize: 4,
  rewardWeights: {},
  scaleRewards: 'none',
  maskTruncated: false,
  dynamicSampling: false,
  overlongCacheLen: 0,
  maxGenLen: 8,
  padId: 0,
  vocabSize: 20,
};

const completion = (logprobs: number[], r: number | null): Completion => ({
  tokens: logprobs.map((_, i) => 3 + i),
  logprobs,
  text: '',
  rewards: { r },
  finishReason: 'stop',
});

const group = (id: string, completions: Completion[]): GroupRollout => ({ groupId: id, policyVersion: 0, promptTokens: [1], completions });

describe('step batch outcomes', () => {
  it('gives each completion its reward total and advantage, and their mean and std over the step', () => {
    // scale none: advantage = reward - group mean
    const b = buildStepBatch([group('a', [completion([-1], 1), completion([-2, -3], 0)]), group('b', [completion([-0.5], 3), completion([-1.5], 1)])], OPTS);
    expect(Array.from(b.outcomes.rewards)).toEqual([1, 0, 3, 1]);
    expect(Array.from(b.outcomes.advantages)).toEqual([0.5, -0.5, 1, -1]);
    expect(b.stats.advantageMean).toBeCloseTo(0, 12);
    expect(b.stats.advantageStd).toBeCloseTo(Math.sqrt((0.25 + 0.25 + 1 + 1) / 3), 6);
    expect(b.stats.logprobMean).toBeCloseTo((-1 - 2 - 3 - 0.5 - 1.5) / 5, 12); // per sampled token, not per completion
  });

  it('gives a group dropped by dynamic sampling advantage 0 and leaves it out of the advantage stats', () => {
    const groups = [group('flat', [completion([-1], 1), completion([-1], 1)]), group('live', [completion([-1], 2), completion([-1], 0)])];
    const b = buildStepBatch(groups, { ...OPTS, dynamicSampling: true });
    expect(Array.from(b.outcomes.advantages)).toEqual([0, 0, 1, -1]);
    expect(Array.from(b.outcomes.rewards)).toEqual([1, 1, 2, 0]);
    expect(b.stats.advantageMean).toBe(0);
    expect(b.stats.advantageStd).toBeCloseTo(Math.SQRT2, 6);
  });

  it('reports NaN means for an empty step', () => {
    const b = buildStepBatch([], OPTS);
    expect(b.stats.advantageMean).toBeNaN();
    expect(b.stats.logprobMean).toBeNaN();
    expect(b.outcomes.advantages).toHaveLength(0);
  });
});
