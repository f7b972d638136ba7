/**
 * rolloutGroups under task grammars: every row samples under the grammar of the task its group's
 * problem came from, which for a curriculum level is the task with the GroupSpec's taskOptions
 * (RolloutContext.taskFor). Rewards come from a host-side stand-in for the reward pool.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { CharTokenizer } from '../../src/model/char-tokenizer.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { Kind, type GroupSpec } from '../../src/shared/protocol.js';
import { validateMessage } from '../../src/shared/protocol-schema.js';
import { COUNTDOWN_ALPHABET, createCountdown, evaluateCountdown, reachedReward } from '../../src/tasks/countdown.js';
import type { Task } from '../../src/tasks/types.js';
import { isGroupFailure, rolloutGroups, type RolloutContext } from '../../src/rollout-worker/rollout.js';

const tokenizer = CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET);
const base = createCountdown({ seed: 6, options: { min_count: 2, max_count: 2, use_all: true } });
let model: LlamaModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = LlamaModel.create(
    presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48, max_position_embeddings: 64, initializer_range: 0.5 }),
    8,
  );
});

afterAll(() => model.dispose());

const pool: RolloutContext['pool'] = {
  scoreGroups: async (groups) =>
    groups.map((items) => ({ status: 'fulfilled', value: { rewards: items.map((it) => ({ reached: reachedReward(it.completion, it.meta) })), errors: [] } })),
};

describe('rolloutGroups with grammars', () => {
  it('samples each group under the grammar of its own task options', async () => {
    const levelOptions = { min_count: 3, max_count: 3, use_all: false };
    const level = createCountdown({ seed: 6, options: levelOptions });
    const asked: unknown[] = [];
    const taskFor = async (options: Readonly<Record<string, unknown>>): Promise<Task> => {
      asked.push(options);
      return level;
    };
    const easy = base.example('train', 0);
    const hard = level.example('train', 0);
    const specs: GroupSpec[] = [
      { groupId: 'a', promptIndex: 0, prompt: easy.prompt, meta: easy.meta, groupSize: 6 },
      { groupId: 'b', promptIndex: 1, prompt: hard.prompt, meta: hard.meta, groupSize: 6, level: 1, taskOptions: levelOptions },
    ];
    const ctx: RolloutContext = {
      model,
      tokenizer,
      task: base,
      taskFor,
      pool,
      sampling: { temperature: 1.5, topK: 0, topP: 1, maxNewTokens: 24, seed: 2 },
      policyVersion: 0,
    };
    const { outcomes } = await rolloutGroups(ctx, specs);
    expect(asked).toEqual([levelOptions]);
    const hardTexts: string[] = [];
    outcomes.forEach((o, g) => {
      if (isGroupFailure(o)) throw new Error(o.message);
      for (const c of o.completions) {
        expect(c.finishReason).toBe('stop');
        expect(evaluateCountdown(c.text, specs[g].meta).valid, `${specs[g].prompt}${c.text}`).toBe(true);
        if (g === 1) hardTexts.push(c.text);
      }
    });
    // use_all false at that level: some samples stop before using every number
    const numbersUsed = (t: string) => t.split(/[^0-9]+/).filter(Boolean).length;
    expect(hardTexts.some((t) => numbersUsed(t) < 3)).toBe(true);
  });

  it('carries level and taskOptions through the wire schema', () => {
    const msg = {
      kind: Kind.Enqueue,
      groups: [{ groupId: 'g', promptIndex: 1, prompt: '1,2>3:', meta: null, groupSize: 2, level: 2, taskOptions: { max_count: 3 } }],
    };
    expect(validateMessage(msg)).toEqual(msg);
    expect(() => validateMessage({ ...msg, groups: [{ ...msg.groups[0], level: -1 }] })).toThrow();
  });
});
