/**
 * What the learner refuses in a worker's GroupResult before it trains on it, beyond the shape
 * checks of batch.ts: a worker is trusted to sample, never to decide what is trained.
 *
 *   - every completion carries rewards, each named by the run, and every reward with a nonzero
 *     weight (RunSpec.rewards.functions; null where it does not apply): an extra name would be
 *     added to the total with weight 1 and steer training, a missing one silently drops a
 *     reward; a weight-0 reward may be left out                            -> GRPO_ERR_REWARD_NAMES
 *     (a completion with no rewards at all                                 -> GRPO_ERR_BAD_ROLLOUT)
 *   - `promptTokens` are the learner's own tokenization of the prompt it leased ([BOS] + encode,
 *     src/tasks/encoding.ts): the learner owns the prompt, and a worker that tokenized it otherwise
 *     (no BOS, another tokenizer) sampled from another context            -> GRPO_ERR_PROMPT_TOKENS
 *
 * A refusal is a GrpoError; the inbox answers it with Verdict `failed` carrying the code, and the
 * coordinator forwards that to the worker as an Error (docs/protocol.md, "Learner refusals").
 */
import { GrpoError } from '../shared/errors.js';
import type { GroupRollout, GroupSpec } from '../shared/protocol.js';

export interface RunGroupCheck {
  rewardWeights: Readonly<Record<string, number>>; // the run's resolved weights: every reward name of the run
  promptTokens: (prompt: string) => readonly number[]; // the learner's [BOS] + encode(prompt)
}

/** Prometheus label of each refusal code (grpo_learner_groups_refused_total{reason}). */
export const REFUSAL_REASONS = {
  GRPO_ERR_REWARD_NAMES: 'reward_names',
  GRPO_ERR_PROMPT_TOKENS: 'prompt_tokens',
  GRPO_ERR_BAD_ROLLOUT: 'bad_rollout',
} as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[keyof typeof REFUSAL_REASONS];

/** The label for a refusal's code; any other code a validator throws counts as bad_rollout. */
export function refusalReason(code: string): RefusalReason {
  return (REFUSAL_REASONS as Record<string, RefusalReason>)[code] ?? 'bad_rollout';
}

const listed = (names: Iterable<string>): string => [...names].join(', ') || 'none';

/** Throws the refusal for `group` (leased as `spec`), or returns when the run may train on it. */
export function checkGroupForRun(group: GroupRollout, spec: GroupSpec, run: RunGroupCheck): void {
  const where = `group ${group.groupId}`;
  const names = new Set(Object.keys(run.rewardWeights));
  const required = [...names].filter((n) => run.rewardWeights[n] !== 0);
  group.completions.forEach((c, j) => {
    const got = Object.keys(c.rewards);
    if (got.length === 0) {
      throw new GrpoError('GRPO_ERR_BAD_ROLLOUT', `${where}, completion ${j} carries no rewards; score every reward of the run (${listed(required)}), null where one does not apply`);
    }
    const extra = got.filter((n) => !names.has(n));
    const missing = required.filter((n) => !Object.hasOwn(c.rewards, n));
    if (extra.length > 0 || missing.length > 0) {
      const parts = [extra.length > 0 ? `names ${listed(extra)}, which the run does not have` : '', missing.length > 0 ? `lacks ${listed(missing)}` : ''];
      throw new GrpoError(
        'GRPO_ERR_REWARD_NAMES',
        `${where}, completion ${j}: rewards ${parts.filter(Boolean).join(' and ')}; the run's rewards are ${listed(required)} (RunSpec.rewards.functions)`,
      );
    }
  });
  const want = run.promptTokens(spec.prompt);
  const got = group.promptTokens;
  const at = firstDifference(want, got);
  if (at >= 0) {
    const show = (xs: readonly number[]): string => (at < xs.length ? String(xs[at]) : 'end');
    throw new GrpoError(
      'GRPO_ERR_PROMPT_TOKENS',
      `${where}: promptTokens (${got.length} ids) differ from the learner's tokenization of the leased prompt (${want.length} ids) ` +
        `at position ${at}: got ${show(got)}, expected ${show(want)}; feed [BOS] + encode(prompt) as docs/protocol.md says`,
    );
  }
}

/** Index of the first position where the arrays differ (a length difference counts), or -1. */
function firstDifference(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
