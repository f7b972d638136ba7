/**
 * Who may hold the learner slot. The slot belongs to the run, not to whoever says Hello first:
 *
 *   - the first learner that joins with a run key (HelloMsg.runKey, kept in its checkpoint) binds
 *     the slot to that key;
 *   - once bound, a learner may take a free slot only by presenting the key (it is the run's
 *     learner, resumed) or the learner's own credential (GRPO_LEARNER_TOKEN distinct from the
 *     workers' token: the operator starts a new run);
 *   - the same proof lets it take the slot from a session that has been silent for `staleMs`
 *     (a learner killed on another host whose TCP connection never closed); a live learner is
 *     never displaced;
 *   - anyone else is refused with LEARNER_TAKEN, whatever token it shares with the workers;
 *   - a learner that leaves with a normal close (1000: its run finished or was stopped) frees the
 *     binding, so the next run can start on the same coordinator; a learner that is lost (killed,
 *     1006) keeps it for its resume.
 *
 * Keys are compared through SHA-256 digests with timingSafeEqual; only the digest is kept.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Peer } from './peer.js';

export type SlotDecision = { ok: true; replace: Peer | null } | { ok: false; why: string };

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class LearnerSlot {
  private bound: Buffer | null = null;

  constructor(private readonly staleMs: number) {}

  /** Whether a run key holds the slot (for stats and logs). */
  get isBound(): boolean {
    return this.bound !== null;
  }

  /** Decides on a learner Hello; on `ok` the caller admits `newcomer` (closing `replace` first) and calls bind(). */
  admit(holder: Peer | null, newcomer: Peer, runKey: string | null, now: number): SlotDecision {
    const proves = this.bound !== null && runKey !== null && timingSafeEqual(digest(runKey), this.bound);
    const trusted = this.bound === null || proves || newcomer.grant.learnerCredential;
    if (!trusted) {
      return {
        ok: false,
        why: "the learner slot belongs to a run whose key this learner did not present; resume from the run's checkpoint, or connect with the learner credential (GRPO_LEARNER_TOKEN)",
      };
    }
    if (holder === null) return { ok: true, replace: null };
    const quietMs = now - holder.lastSeen;
    if ((proves || newcomer.grant.learnerCredential) && quietMs > this.staleMs) return { ok: true, replace: holder };
    return { ok: false, why: `learner ${holder.name} (${holder.sessionId}) is connected (last heard ${quietMs} ms ago); only one learner at a time` };
  }

  /** The run's learner left normally: the next learner, of any run, may bind the slot. */
  release(): void {
    this.bound = null;
  }

  /** The admitted learner's key binds the slot (a learner without a key leaves the binding as it is). */
  bind(runKey: string | null): void {
    if (runKey !== null) this.bound = digest(runKey);
  }
}
