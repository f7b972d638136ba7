import { beforeAll, describe, expect, it } from 'vitest';
import {
  OVERLONG_REWARD,
  batchOptionsFromConfig,
  buildStepBatch,
  checkStepGroup,
  microBatchTensors,
  resolveRewardWeights,
  type BatchOptions,
} from '../../src/learner/batch.js';
import { parseConfig } from '../../src/shared/config.js';
import { tf } from '../../src/engine/tf.js';
import { groupAdvantages } from '../../src/grpo/index.js';
import { findSharedPrefix } from '../../src/model/shared-prefix.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import type { Completion, FinishReason, GroupRollout } from '../../src/shared/protocol.js';
import { expectCode, tinyLlamaConfig } from '../helpers.js';

const OPTS: BatchOptions = {
  groupSize: 2,
  microBatchSize: 4,
  rewardWeights: {},
  scaleRewards: 'group',
  maskTruncated: false,
  dynamicSampling: false,
  overlongCacheLen: 0,
  maxGenLen: 8,
  padId: 0,
  vocabSize: 20,
};

function completion(tokens: number[], rewards: Record<string, number | null>, finishReason: FinishReason = 'stop'): Completion {
  return { tokens, logprobs: tokens.map((t) => -t / 10), text: '', rewards, finishReason };
}

function group(id: string, promptTokens: number[], completions: Completion[], policyVersion = 0): GroupRollout {
  return { groupId: id, policyVersion, promptTokens, completions };
}

/** Row b of a flat [B * W] array. */
const row = <T extends Int32Array | Float32Array>(a: T, b: number, W: number): number[] => Array.from(a.subarray(b * W, (b + 1) * W));

describe('buildStepBatch layout', () => {
  it('ends every prompt at one column (left-padded) and starts every completion there; mask and oldLogp sit on the completion tokens', () => {
    const groups = [
      group('a', [1, 5, 6], [completion([7, 2], { r: 1 }), completion([], { r: 0 }, 'grammar')]),
      group('b', [1], [completion([3, 4, 9, 2], { r: 0 }), completion([8], { r: 1 })]),
    ];
    const { microBatches, trainTokens, completions } = buildStepBatch(groups, OPTS);
    expect(microBatches).toHaveLength(1);
    const mb = microBatches[0];
    expect([mb.size, mb.length]).toEqual([4, 7]); // P = 3 prompt columns + 4 completion columns
    expect(Array.from(mb.leftPad)).toEqual([0, 0, 2, 2]);
    expect(row(mb.ids, 0, 7)).toEqual([1, 5, 6, 7, 2, 0, 0]);
    expect(row(mb.ids, 1, 7)).toEqual([1, 5, 6, 0, 0, 0, 0]);
    expect(row(mb.ids, 2, 7)).toEqual([0, 0, 1, 3, 4, 9, 2]);
    expect(row(mb.ids, 3, 7)).toEqual([0, 0, 1, 8, 0, 0, 0]);
    // logp[b, t] predicts ids[b, t + 1]: the completion's C tokens are predicted at t = P-1 .. P-2+C
    expect(row(mb.mask, 0, 6)).toEqual([0, 0, 1, 1, 0, 0]);
    expect(row(mb.mask, 1, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(row(mb.mask, 2, 6)).toEqual([0, 0, 1, 1, 1, 1]);
    expect(row(mb.mask, 3, 6)).toEqual([0, 0, 1, 0, 0, 0]);
    expect(row(mb.oldLogp, 0, 6)).toEqual([0, 0, -0.7, -0.2, 0, 0].map(Math.fround));
    expect(row(mb.oldLogp, 2, 6)).toEqual([0, 0, -0.3, -0.4, -0.9, -0.2].map(Math.fround));
    expect(row(mb.oldLogp, 3, 6)).toEqual([0, 0, -0.8, 0, 0, 0].map(Math.fround));
    // 2 distinct prompts for 4 rows would skip 6 of 28 positions: under a quarter, so no prefix
    expect(mb.prefix).toBeUndefined();
    expect(mb.tokens).toBe(7);
    expect(trainTokens).toBe(7);
    expect(completions).toBe(4);
    expect(Array.from(mb.advantages)).toEqual(Array.from(groupAdvantages([1, 0, 0, 1], 2).advantages));
  });

  it('computes advantages over the whole step batch, then splits it into micro-batches', () => {
    const rewards = [
      [1, 0, 0.5, 1],
      [0, 0, 1, 0.25],
      [3, 1, 2, 2],
    ];
    const groups = rewards.map((rs, g) => group(`g${g}`, [1, g + 3], rs.map((r, j) => completion([4 + j], { r }))));
    for (const scaleRewards of ['group', 'batch', 'none'] as const) {
      const o = { ...OPTS, groupSize: 4, microBatchSize: 5, scaleRewards };
      const { microBatches } = buildStepBatch(groups, o);
      expect(microBatches.map((mb) => mb.size)).toEqual([5, 5, 2]);
      const got = microBatches.flatMap((mb) => Array.from(mb.advantages));
      const want = groupAdvantages(rewards.flat(), 4, { scale: scaleRewards }).advantages;
      expect(got).toEqual(Array.from(want));
    }
  });

  it('weights reward functions by name; weight 0 leaves a function out, null is unscored', () => {
    const groups = [
      group('a', [1], [
        completion([3], { correct: 1, format: 0, partial: 5 }),
        completion([4], { correct: 0, format: 1, partial: 0 }),
        completion([5], { correct: 0, format: 0, partial: 1 }),
        completion([6], { correct: null, format: null, partial: 1 }),
      ]),
    ];
    const o = { ...OPTS, groupSize: 4, rewardWeights: { format: 0.5, partial: 0 } };
    const b = buildStepBatch(groups, o);
    const want = groupAdvantages({ correct: [1, 0, 0, null], format: [0, 1, 0, null] }, 4, { weights: { format: 0.5 } });
    expect(Array.from(b.microBatches[0].advantages)).toEqual(Array.from(want.advantages));
    expect(b.microBatches[0].advantages[3]).toBe(0);
    expect(b.stats.unscored).toBe(1);
    expect(b.stats.rewardFunctions.partial.mean).toBeCloseTo(7 / 4, 12);
    expect(b.stats.rewardFunctions.correct.mean).toBeCloseTo(1 / 3, 12);
    expect(b.stats.rewardMean).toBeCloseTo(1.5 / 3, 12);
  });

  it('mask_truncated zeroes the rows of completions cut at max_gen_len, which still count for advantages', () => {
    const groups = [group('a', [1], [completion([3, 4, 5, 6], { r: 1 }, 'length'), completion([7, 2], { r: 0 })])];
    const b = buildStepBatch(groups, { ...OPTS, maxGenLen: 4, maskTruncated: true });
    const mb = b.microBatches[0];
    expect(row(mb.mask, 0, 4)).toEqual([0, 0, 0, 0]);
    expect(row(mb.mask, 1, 4)).toEqual([1, 1, 0, 0]); // P = 1: completions start at column 1
    expect(row(mb.oldLogp, 0, 4)).toEqual([-0.3, -0.4, -0.5, -0.6].map(Math.fround));
    expect(b.trainTokens).toBe(2);
    expect(mb.advantages[0]).toBeGreaterThan(0);
    expect(b.stats.truncatedShare).toBe(0.5);
    expect(b.stats.completionTokens).toBe(6);
  });

  it('adds the DAPO overlong penalty as one more reward on the completions something scored', () => {
    const lengths = [1, 2, 3, 4];
    const groups = [group('a', [1], [...lengths.map((n) => completion(Array(n).fill(3), { r: 1 })), completion([3], { r: null })])];
    const b = buildStepBatch(groups, { ...OPTS, groupSize: 5, maxGenLen: 4, overlongCacheLen: 2 });
    // ramp from max_gen_len - cache = 2 tokens: 0, 0, -0.5, -1; the unscored one gets none
    const want = groupAdvantages([1, 1, 0.5, 0, null], 5).advantages;
    expect(b.microBatches.flatMap((mb) => Array.from(mb.advantages))).toEqual(Array.from(want));
    expect(b.stats.rewardFunctions[OVERLONG_REWARD].mean).toBeCloseTo(-1.5 / 4, 12);
    expect(b.stats.unscored).toBe(1);
  });

  it('dynamic sampling drops flat groups before the advantages and reports them', () => {
    const groups = [
      group('flat', [1], [completion([3], { r: 1 }), completion([4], { r: 1 })]),
      group('live', [1], [completion([3], { r: 1 }), completion([4], { r: 0 })]),
      group('none', [1], [completion([3], { r: null }), completion([4], { r: null })]),
    ];
    const b = buildStepBatch(groups, { ...OPTS, dynamicSampling: true, scaleRewards: 'batch' });
    expect(b.stats.droppedGroups).toBe(2);
    expect(b.completions).toBe(2);
    expect(b.microBatches).toHaveLength(1);
    expect(Array.from(b.microBatches[0].advantages)).toEqual(Array.from(groupAdvantages([1, 0], 2, { scale: 'batch' }).advantages));
    expect(b.stats.groups).toBe(3);
    expect(b.stats.fracRewardZeroStd).toBeCloseTo(2 / 3, 12);
  });

  it('reports lengths and an empty batch when everything is dropped', () => {
    const groups = [group('flat', [1], [completion([3, 4, 5], { r: 1 }), completion([4], { r: 1 })])];
    const b = buildStepBatch(groups, { ...OPTS, dynamicSampling: true });
    expect(b.microBatches).toEqual([]);
    expect(b.trainTokens).toBe(0);
    expect([b.stats.lengthMean, b.stats.lengthMin, b.stats.lengthMax]).toEqual([2, 1, 3]);
  });

  it('rejects malformed groups with GRPO_ERR_BAD_ROLLOUT', () => {
    const ok = (): Completion => completion([3], { r: 1 });
    const cases: GroupRollout[][] = [
      [group('a', [1], [ok()])], // partial group
      [group('a', [1], [ok(), ok()]), group('a', [1], [ok(), ok()])], // duplicate id
      [group('a', [], [ok(), ok()])], // empty prompt
      [group('a', [1], [ok(), { ...ok(), logprobs: [] }])],
      [group('a', [1], [ok(), { ...ok(), logprobs: [NaN] }])],
      [group('a', [1], [ok(), completion([25], { r: 1 })])], // outside the vocabulary
      [group('a', [1], [ok(), completion(Array(9).fill(3), { r: 1 })])], // longer than max_gen_len
      [group('a', [1], [completion([3], {}), completion([3], {})])], // no reward at all
    ];
    for (const groups of cases) expectCode(() => buildStepBatch(groups, OPTS), 'GRPO_ERR_BAD_ROLLOUT');
    expectCode(() => buildStepBatch([group('a', [1], [ok(), ok()])], { ...OPTS, microBatchSize: 0 }), 'GRPO_ERR_BAD_OPTION');
  });

  it('checkStepGroup refuses a group exactly when buildStepBatch on it alone throws, with the same code', () => {
    const ok = (): Completion => completion([3], { r: 1 });
    const cases: [GroupRollout, BatchOptions][] = [
      [group('a', [1], [ok(), ok()]), OPTS],
      [group('a', [1], [ok(), completion([4, 5], { r: 0 })]), { ...OPTS, dynamicSampling: true }],
      [group('a', [1], [ok()]), OPTS], // partial
      [group('a', [], [ok(), ok()]), OPTS], // empty prompt
      [group('a', [1], [ok(), { ...ok(), logprobs: [0.5] }]), OPTS], // positive logprob
      [group('a', [1], [ok(), { ...ok(), allowed: [[4, 5]] }]), OPTS], // token outside its allowed set
      [group('a', [1], [ok(), completion([3], { r: Infinity })]), OPTS], // a reward the advantages refuse
      [group('a', [1], [ok(), completion([3], { z: 1 })]), { ...OPTS, rewardWeights: { r: 0, z: 0 } }], // nothing weighted
      [group('a', [1], [ok(), completion([3], { [OVERLONG_REWARD]: 1 })]), { ...OPTS, overlongCacheLen: 2 }],
      [group('a', [1], [ok(), ok()]), { ...OPTS, microBatchSize: 0 }],
    ];
    const codeOf = (f: () => unknown): string | null => {
      try {
        f();
        return null;
      } catch (e) {
        return (e as { code?: string }).code ?? 'no code';
      }
    };
    const codes = cases.map(([g, o]) => [codeOf(() => checkStepGroup(g, o)), codeOf(() => buildStepBatch([g], o))]);
    for (const [mine, theirs] of codes) expect(mine).toBe(theirs);
    expect(codes.map(([c]) => c)).toEqual([
      null,
      null,
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_REWARD',
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_ROLLOUT',
      'GRPO_ERR_BAD_OPTION',
    ]);
  });

  it('resolves reward weights from task defaults and config overrides', () => {
    const task = [
      { name: 'correct', weight: 1 },
      { name: 'format', weight: 0 },
    ];
    expect(resolveRewardWeights(task, { format: 0.2 })).toEqual({ correct: 1, format: 0.2 });
    expectCode(() => resolveRewardWeights(task, { fromat: 0.2 }), 'GRPO_ERR_CONFIG');
  });
});

describe('the batch against the model', () => {
  let model: LlamaModel;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    const config = tinyLlamaConfig({ vocabSize: 20, bosId: 1, eosId: 2, padId: 0 }, { max_position_embeddings: 32, initializer_range: 0.3 }, 'gqa');
    model = LlamaModel.create(config, 7);
  });

  it('recomputes the sampler behaviour log-probs exactly on the batch layout (mask = 1)', async () => {
    const prompts = [[1, 5, 6, 7, 8], [1, 9], [1, 3, 4]];
    const groupSize = 3;
    const temperature = 0.8;
    const rollouts: GroupRollout[] = [];
    for (let g = 0; g < prompts.length; g++) {
      const r = await sample(model, Array(groupSize).fill(prompts[g]), {
        maxNewTokens: 6,
        temperature,
        topK: 0,
        topP: 0.95,
        stopTokens: [2, 3],
        seed: 11 + g,
      });
      const completions = r.tokens.map((tokens, j) => ({
        tokens,
        logprobs: r.logprobs[j],
        text: '',
        rewards: { r: j % 2 },
        finishReason: r.finishReason[j],
      }));
      rollouts.push(group(`g${g}`, prompts[g], completions));
    }
    const lengths = rollouts.flatMap((g) => g.completions.map((c) => c.tokens.length));
    expect(new Set(lengths).size).toBeGreaterThan(1); // ragged completions, not only ragged prompts
    const opts = batchOptionsFromConfig(parseConfig({ group_size: groupSize, micro_batch_size: 4, max_gen_len: 6 }), model.config, {});
    const batch = buildStepBatch(rollouts, opts);
    expect(batch.trainTokens).toBe(lengths.reduce((a, b) => a + b, 0));
    let compared = 0;
    for (const mb of batch.microBatches) {
      const t = microBatchTensors(mb);
      // every row as it is, and each distinct prompt once (shared-prefix.ts), whether or not the
      // batch found that worth it
      const prefix = t.prefix ?? findSharedPrefix(mb.ids, mb.size, mb.length, mb.promptColumns);
      for (const p of [undefined, prefix]) {
        const logp = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature, leftPad: t.leftPad, prefix: p }).logp);
        const got = (await logp.data()) as Float32Array;
        logp.dispose();
        for (let i = 0; i < got.length; i++) {
          if (mb.mask[i] !== 1) continue;
          expect(Math.abs(got[i] - mb.oldLogp[i])).toBeLessThan(1e-4);
          if (p === undefined) compared++;
        }
      }
      tf.dispose([t.ids, t.mask, t.oldLogp]);
    }
    expect(compared).toBe(batch.trainTokens);
  });

  it('makes tensors of the right shapes, and leaks none', () => {
    const groups = [group('a', [1, 5], [completion([7, 2], { r: 1 }), completion([3], { r: 0 })])];
    const mb = buildStepBatch(groups, OPTS).microBatches[0];
    const before = tf.memory().numTensors;
    const t = microBatchTensors(mb);
    expect([t.ids.shape, t.ids.dtype, t.mask.shape, t.oldLogp.shape]).toEqual([[2, 4], 'int32', [2, 3], [2, 3]]);
    tf.dispose([t.ids, t.mask, t.oldLogp]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
