/**
 * checkGroupForRun (src/learner/group-check.ts) case by case, and the Verdict fields that carry a
 * refusal back (the schema's rules for `code` and `message`). The end-to-end path, with the Error
 * the worker receives, is tests/learner/refusals.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { checkGroupForRun, refusalReason } from '../../src/learner/group-check.js';
import { decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { Kind, WireError, type GroupRollout, type GroupSpec, type VerdictMsg } from '../../src/shared/protocol.js';

const spec: GroupSpec = { groupId: 'g1', promptIndex: 0, prompt: 'ab', meta: null, groupSize: 2 };
const run = { rewardWeights: { correct: 1, format: 0, style: 0.5 }, promptTokens: (p: string) => [1, ...[...p].map((c) => c.charCodeAt(0))] };
const group = (rewards: Record<string, number | null>[], promptTokens = [1, 97, 98]): GroupRollout => ({
  groupId: 'g1',
  policyVersion: 0,
  promptTokens,
  completions: rewards.map((r) => ({ tokens: [2], logprobs: [-1], text: '', rewards: r, finishReason: 'stop' as const })),
});

function codeOf(f: () => void): string | null {
  try {
    f();
    return null;
  } catch (err) {
    if (!isGrpoError(err)) throw err;
    expect(err.message).toContain('group g1');
    return err.code;
  }
}

describe('checkGroupForRun', () => {
  it('accepts every active reward, with nulls, and a weight-0 reward sent or left out', () => {
    expect(codeOf(() => checkGroupForRun(group([{ correct: 1, style: null }, { correct: 0, style: 0.5, format: 1 }]), spec, run))).toBeNull();
  });

  it('refuses a reward the run does not have, and an active one missing, with GRPO_ERR_REWARD_NAMES', () => {
    expect(codeOf(() => checkGroupForRun(group([{ correct: 1, style: 0 }, { correct: 0, style: 0, bogus: 0.5 }]), spec, run))).toBe('GRPO_ERR_REWARD_NAMES');
    expect(codeOf(() => checkGroupForRun(group([{ correct: 1 }, { correct: 0 }]), spec, run))).toBe('GRPO_ERR_REWARD_NAMES');
  });

  it('refuses a completion with no rewards at all with GRPO_ERR_BAD_ROLLOUT', () => {
    expect(codeOf(() => checkGroupForRun(group([{ correct: 1, style: 0 }, {}]), spec, run))).toBe('GRPO_ERR_BAD_ROLLOUT');
  });

  it('refuses prompt tokens other than the learner tokenization with GRPO_ERR_PROMPT_TOKENS (no BOS, another id, extra ids)', () => {
    const ok = [{ correct: 1, style: 0 }];
    for (const tokens of [[97, 98], [1, 97, 99], [1, 97, 98, 2], []]) {
      expect(codeOf(() => checkGroupForRun(group(ok, tokens), spec, run)), JSON.stringify(tokens)).toBe('GRPO_ERR_PROMPT_TOKENS');
    }
  });

  it('labels refusals for Prometheus by code, anything else as bad_rollout', () => {
    expect(refusalReason('GRPO_ERR_REWARD_NAMES')).toBe('reward_names');
    expect(refusalReason('GRPO_ERR_PROMPT_TOKENS')).toBe('prompt_tokens');
    expect(refusalReason('GRPO_ERR_SOMETHING_ELSE')).toBe('bad_rollout');
  });
});

describe('Verdict refusal fields', () => {
  const base: VerdictMsg = { kind: Kind.Verdict, groupId: 'g1', admitted: false, reason: 'failed' };
  const decodes = (m: Record<string, unknown>): string | null => {
    try {
      decodeMessage(encodeMessage(m as unknown as VerdictMsg));
      return null;
    } catch (err) {
      return isGrpoError(err) ? err.code : String(err);
    }
  };

  it('carries code and message together, only with reason failed', () => {
    expect(decodes({ ...base, code: 'GRPO_ERR_REWARD_NAMES', message: 'group g1: bogus' })).toBeNull();
    expect(decodes({ ...base, code: 'GRPO_ERR_REWARD_NAMES' })).toBe(WireError.BadMessage);
    expect(decodes({ ...base, message: 'why' })).toBe(WireError.BadMessage);
    expect(decodes({ ...base, admitted: true, reason: 'ok', code: 'GRPO_ERR_REWARD_NAMES', message: 'x' })).toBe(WireError.BadMessage);
    expect(decodes({ ...base, code: 'not-a-code', message: 'x' })).toBe(WireError.BadMessage);
    expect(decodes({ ...base, code: 'GRPO_ERR_X_Y', message: 'x'.repeat(2_001) })).toBe(WireError.BadMessage);
  });
});
