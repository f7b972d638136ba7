/**
 * Replay of high-variance groups (config replay_buffer_size > 0; off by default).
 *
 * A group whose completions all get the same reward total has zero advantage everywhere and adds
 * no gradient; late in training (everything solved) or early (nothing solved) many groups are
 * like that. The buffer keeps the most recent groups whose totals DID differ and, in each step
 * batch, swaps every zero-variance group for a stored one, highest reward spread first:
 *
 *   batch          fresh groups from the workers (their prompts are consumed either way)
 *   drop           stored groups sampled more than replay_max_age policy versions ago
 *   substitute     each zero-variance fresh group -> the stored group with the largest reward
 *                  std (ties: the newest); a stored group is replayed once, then forgotten
 *   store          the batch's fresh high-variance groups, evicting the oldest beyond the size
 *
 * Replayed groups are off-policy by their age: the loss's importance ratio uses their stored
 * behaviour log-probabilities, so the clipped surrogate corrects for (and bounds) the difference,
 * as it does for max_staleness. Reward totals follow the step batch's rules (batch.ts): a reward
 * name missing from the weights weighs 1, weight-0 functions and unscored values are left out,
 * and a spread within 1e-8 counts as zero (as dynamic sampling and the advantages do). The
 * buffer lives in memory only: a resumed run starts with it empty.
 */
import type { GroupRollout } from '../shared/protocol.js';

/** Reward totals spanning at most this are flat (ADVANTAGE_DEFAULTS.flatTolerance). */
export const FLAT_TOLERANCE = 1e-8;

export interface ReplayOptions {
  size: number; // stored groups at most (config replay_buffer_size)
  maxAge: number; // policy versions a stored group may lag the learner (config replay_max_age)
  rewardWeights: Readonly<Record<string, number>>; // resolved weights, as the step batch uses them
}

export interface ReplayResult {
  groups: GroupRollout[]; // the batch to train, in the fresh batch's order
  replayed: number; // zero-variance groups swapped for stored ones
  stored: number; // groups in the buffer afterwards
}

interface Stored {
  group: GroupRollout;
  std: number;
  order: number; // insertion counter: larger = newer
}

/** Sample std of a group's weighted reward totals (completions no weighted function scored are left out). */
export function groupRewardStd(group: GroupRollout, weights: Readonly<Record<string, number>>): number {
  const totals: number[] = [];
  for (const c of group.completions) {
    let total = 0;
    let scored = false;
    for (const [name, value] of Object.entries(c.rewards)) {
      const w = weights[name] ?? 1;
      if (w === 0 || value === null || Number.isNaN(value)) continue;
      total += w * value;
      scored = true;
    }
    if (scored) totals.push(total);
  }
  if (totals.length < 2) return 0;
  const min = Math.min(...totals);
  const max = Math.max(...totals);
  if (max - min <= FLAT_TOLERANCE) return 0;
  const mean = totals.reduce((a, b) => a + b, 0) / totals.length;
  return Math.sqrt(totals.reduce((a, t) => a + (t - mean) ** 2, 0) / (totals.length - 1));
}

export class ReplayBuffer {
  private stored: Stored[] = [];
  private counter = 0;

  constructor(private readonly o: ReplayOptions) {}

  get size(): number {
    return this.stored.length;
  }

  /** The batch to train at learner version `version` (see the file comment). */
  substitute(fresh: readonly GroupRollout[], version: number): ReplayResult {
    this.stored = this.stored.filter((s) => version - s.group.policyVersion <= this.o.maxAge);
    const stds = fresh.map((g) => groupRewardStd(g, this.o.rewardWeights));
    let replayed = 0;
    const groups = fresh.map((g, i) => {
      if (stds[i] > 0 || this.stored.length === 0) return g;
      let best = 0;
      for (let k = 1; k < this.stored.length; k++) {
        const a = this.stored[k];
        const b = this.stored[best];
        if (a.std > b.std || (a.std === b.std && a.order > b.order)) best = k;
      }
      replayed += 1;
      return this.stored.splice(best, 1)[0].group;
    });
    fresh.forEach((g, i) => {
      if (stds[i] > 0) this.stored.push({ group: g, std: stds[i], order: this.counter++ });
    });
    if (this.stored.length > this.o.size) this.stored = this.stored.slice(this.stored.length - this.o.size);
    return { groups, replayed, stored: this.stored.length };
  }
}
