/**
 * rolloutGroups on a tiny random LlamaModel with the arithmetic task (tf cpu backend) and real
 * reward pools (piscina threads running the compiled dist/ files: build first, `npx tsc -p .`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { LlamaModel } from '../../src/model/llama.js';
import type { CharTokenizer } from '../../src/model/char-tokenizer.js';
import { Kind } from '../../src/shared/protocol.js';
import type { GroupRollout, GroupSpec } from '../../src/shared/protocol.js';
import { validateMessage } from '../../src/shared/protocol-schema.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import type { Task } from '../../src/tasks/index.js';
import { RewardPool } from '../../src/rollout-worker/reward-pool.js';
import { isGroupFailure, rolloutGroups, rolloutSeed } from '../../src/rollout-worker/rollout.js';
import type { GroupOutcome, RolloutContext } from '../../src/rollout-worker/rollout.js';
import { tinyLlamaConfig } from '../helpers.js';

const MAX_NEW = 6;
const SAMPLING = { temperature: 1, topK: 0, topP: 1, maxNewTokens: MAX_NEW, seed: 11 };

let task: Task;
let tok: CharTokenizer;
let model: LlamaModel;
let arithmeticPool: RewardPool;
let chaosPool: RewardPool;

beforeAll(async () => {
  await tf.setBackend('cpu');
  task = createTask('arithmetic', { seed: 7 });
  tok = tokenizerForTask(task);
  const config = tinyLlamaConfig(tok, { max_position_embeddings: 64, initializer_range: 0.2 });
  model = LlamaModel.create(config, 5);
  const quiet = () => undefined;
  arithmeticPool = new RewardPool({ task: 'arithmetic', taskSeed: 7, rewardWeights: { format: 0.5 }, log: quiet });
  // chaos scores a completion by its length and throws when meta.fail is set
  chaosPool = new RewardPool({ task: 'tests/fixtures/rewards/chaos-task.js', taskSeed: 7, retries: 1, log: quiet });
  await Promise.all([arithmeticPool.ready(), chaosPool.ready()]);
});

afterAll(async () => {
  await Promise.all([arithmeticPool.close(), chaosPool.close()]);
  model.dispose();
});

function ctx(over: Partial<RolloutContext> = {}): RolloutContext {
  return { model, tokenizer: tok, task, pool: arithmeticPool, sampling: SAMPLING, policyVersion: 3, ...over };
}

function specs(ids: string[], sizes: number[], from = 0): GroupSpec[] {
  return ids.map((groupId, g) => {
    const ex = task.example('train', from + g);
    return { groupId, promptIndex: from + g, prompt: ex.prompt, meta: ex.meta, groupSize: sizes[g] };
  });
}

function rollout(o: GroupOutcome): GroupRollout {
  if (isGroupFailure(o)) throw new Error(`group ${o.groupId} failed: ${o.code} ${o.message}`);
  return o;
}

describe('rolloutGroups', () => {
  it('returns one group per spec with groupSize completions, aligned tokens and log-probs, and rewards', async () => {
    const s = specs(['g0', 'g1', 'g2'], [4, 2, 3]);
    const { outcomes, timing } = await rolloutGroups(ctx(), s);
    expect(outcomes.map((o) => o.groupId)).toEqual(['g0', 'g1', 'g2']);
    let tokens = 0;
    outcomes.forEach((o, g) => {
      const group = rollout(o);
      expect(group.policyVersion).toBe(3);
      expect(group.promptTokens).toEqual(promptIds(tok, s[g].prompt));
      expect(group.rewardErrors).toBeUndefined();
      expect(group.completions).toHaveLength(s[g].groupSize);
      for (const c of group.completions) {
        expect(c.tokens.length).toBeGreaterThan(0);
        expect(c.tokens.length).toBeLessThanOrEqual(MAX_NEW);
        expect(c.logprobs).toHaveLength(c.tokens.length);
        for (const lp of c.logprobs) expect(Number.isFinite(lp) && lp <= 0).toBe(true);
        const stopped = c.tokens[c.tokens.length - 1] === tok.eosId;
        expect(c.finishReason).toBe(stopped ? 'stop' : 'length');
        expect(c.text).toBe(decodeCompletion(tok, c.tokens));
        expect(c.rewards.correct).toBe(task.isCorrect(s[g].prompt, c.text, s[g].meta) ? 1 : 0);
        expect(c.rewards.format).toBeTypeOf('number'); // enabled by rewardWeights
        expect(Object.keys(c.rewards)).toEqual(['correct', 'format']);
        tokens += c.tokens.length;
      }
      // what the worker sends must pass the coordinator's wire schema
      validateMessage({ kind: Kind.Groups, leaseId: 'l1', results: [group] });
    });
    expect(timing.tokensGenerated).toBe(tokens);
    expect(timing.completions).toBe(9);
    expect(timing.sampleSeconds).toBeGreaterThan(0);
    expect(timing.rewardSeconds).toBeGreaterThan(0);
  });

  it("stops at every one of the tokenizer's stop ids, not only EOS (end-of-turn tokens of chat models)", async () => {
    // a tokenizer whose stop set holds every token but EOS: each completion ends at its first token
    const stopIds = Array.from({ length: tok.vocabSize }, (_, i) => i).filter((i) => i !== tok.eosId);
    const chatTok = Object.assign(Object.create(tok) as CharTokenizer, { stopIds });
    const { outcomes } = await rolloutGroups(ctx({ tokenizer: chatTok }), specs(['s0', 's1'], [4, 4]));
    for (const o of outcomes) {
      for (const c of rollout(o).completions) {
        expect(c.tokens).toHaveLength(1);
        expect(c.finishReason).toBe('stop');
        expect(c.text).toBe('');
      }
    }
  });

  it('is reproducible for the same seed and groups, and draws other completions for other group ids', async () => {
    const a = await rolloutGroups(ctx(), specs(['r0', 'r1'], [4, 4]));
    const b = await rolloutGroups(ctx(), specs(['r0', 'r1'], [4, 4]));
    expect(b.outcomes).toEqual(a.outcomes);
    const c = await rolloutGroups(ctx(), specs(['r2', 'r3'], [4, 4]));
    const texts = (x: typeof a) => x.outcomes.flatMap((o) => rollout(o).completions.map((k) => k.tokens.join(',')));
    expect(texts(c)).not.toEqual(texts(a));
    expect(rolloutSeed(11, ['r0', 'r1'])).toBe(rolloutSeed(11, ['r0', 'r1']));
    expect(rolloutSeed(11, ['r0', 'r1'])).not.toBe(rolloutSeed(11, ['r2', 'r3']));
    expect(rolloutSeed(11, ['r0', 'r1'])).not.toBe(rolloutSeed(12, ['r0', 'r1']));
  });

  it('reports a group whose rewards fail after retries as a failure and keeps the other groups', async () => {
    const s = specs(['f0', 'f1', 'f2'], [3, 3, 3]);
    s[1] = { ...s[1], meta: { fail: true } };
    const { outcomes } = await rolloutGroups(ctx({ pool: chaosPool }), s);
    expect(isGroupFailure(outcomes[1])).toBe(true);
    expect(outcomes[1]).toMatchObject({ groupId: 'f1', code: 'GRPO_ERR_REWARD_FAILED' });
    expect((outcomes[1] as { message: string }).message).toContain('reward chaos');
    for (const g of [0, 2]) {
      for (const c of rollout(outcomes[g]).completions) expect(c.rewards).toEqual({ chaos: c.text.length });
    }
  });

  it('passes a closed pool error to the caller instead of failing groups one by one', async () => {
    const closed = new RewardPool({ task: 'arithmetic', taskSeed: 7, log: () => undefined });
    await closed.close();
    const err = await rolloutGroups(ctx({ pool: closed }), specs(['c0'], [2])).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isGrpoError(err, 'GRPO_ERR_REWARD_POOL_CLOSED')).toBe(true);
  });

  it('samples under the task grammar when it has one', async () => {
    const one = tok.encode('1')[0];
    const grammarTask: Task = Object.assign(Object.create(task) as Task, {
      grammar: () => (_generated: number[][], rows: number[]) => rows.map(() => [one, tok.eosId]),
    });
    const { outcomes } = await rolloutGroups(ctx({ task: grammarTask }), specs(['m0', 'm1'], [4, 4]));
    for (const o of outcomes) {
      for (const c of rollout(o).completions) {
        expect(c.text).toMatch(/^1*$/);
        for (const t of c.tokens) expect([one, tok.eosId]).toContain(t);
      }
    }
  });

  it('rejects duplicate group ids, a bad group size and a bad policy version', async () => {
    const bad: [Partial<RolloutContext>, GroupSpec[]][] = [
      [{}, [...specs(['d0'], [2]), ...specs(['d0'], [2])]],
      [{}, specs(['d1'], [0])],
      [{ policyVersion: -1 }, specs(['d2'], [2])],
    ];
    for (const [over, s] of bad) {
      const err = await rolloutGroups(ctx(over), s).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isGrpoError(err, 'GRPO_ERR_BAD_GROUP_SPEC'), String(err)).toBe(true);
    }
  });

  it('keeps the tensor count stable across calls', async () => {
    await rolloutGroups(ctx(), specs(['t0', 't1'], [3, 3]));
    const before = tf.memory().numTensors;
    for (const ids of [['t2', 't3'], ['t4', 't5']]) await rolloutGroups(ctx(), specs(ids, [3, 3]));
    expect(tf.memory().numTensors).toBe(before);
  });
});
