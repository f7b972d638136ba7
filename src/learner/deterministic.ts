/**
 * Deterministic mode (config `deterministic: true`): two runs with the same seed and settings, a
 * resume and an uninterrupted run, or runs with any number of workers, train on the same
 * completions in the same order and so log the same losses. What it takes:
 *
 *   - each group's sampling seed comes from the run seed, the step it is trained at and its prompt
 *     (groupSeed), not from its group id (whose tag is random per learner process);
 *   - the worker samples such a group in a call of its own (src/rollout-worker/rollout.ts), so its
 *     completions do not depend on the worker or on the groups sampled beside it;
 *   - steps are on-policy (max_staleness is taken as 0: no group is sampled during a step, so
 *     every group of step s is sampled with the weights after step s - 1), and the batch is
 *     trained in prompt order, not in arrival order (stepOrder);
 *   - the replay buffer is off (it is not part of the checkpoint, so a resume would differ).
 *
 * The price is throughput: no sampling overlaps a step, and a worker makes one sampling call per
 * group. Use it to bisect a regression, not for long runs. Identical results also need the same
 * backend and machine type: float sums differ between engines.
 */
import { hashSeed } from '../shared/rng.js';
import type { AdmittedGroup } from './groups-inbox.js';

/** The sampling seed of `promptIndex`'s group trained at step `step` (0-based: steps done before it). */
export function groupSeed(runSeed: number, step: number, promptIndex: number): number {
  return hashSeed(runSeed, 'group', step, promptIndex);
}

/** The batch of a step: in deterministic mode sorted by prompt, else as it arrived. */
export function stepOrder(batch: AdmittedGroup[], deterministic: boolean): AdmittedGroup[] {
  return deterministic ? [...batch].sort((a, b) => a.spec.promptIndex - b.spec.promptIndex) : batch;
}
