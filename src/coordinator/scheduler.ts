/**
 * Who gets the queued groups. Groups go one at a time to the ready worker with the most free
 * slots (capacity minus groups it holds), ties broken round-robin, so a few queued groups spread
 * over many workers instead of piling on one; each worker then gets one Lease with its share.
 * Leasing pauses while the groups in flight (leased, or finished and not yet judged by the
 * learner) reach maxHeldResults, so an absent learner cannot make results pile up without bound.
 */
import type { LeaseMsg } from '../shared/protocol.js';
import { Kind } from '../shared/protocol.js';
import type { Ledger } from './ledger.js';

export interface WorkerSlot {
  id: string;
  capacity: number; // groups the worker samples at once
  load: number; // groups it holds now
}

/** Water-filling: how many of `available` groups each worker gets (workers absent get none). */
export function planLeases(workers: readonly WorkerSlot[], available: number): Map<string, number> {
  const free = workers.map((w) => Math.max(0, w.capacity - w.load));
  const plan = new Map<string, number>();
  for (let given = 0; given < available; given++) {
    let best = -1;
    for (let i = 0; i < free.length; i++) if (free[i] > 0 && (best < 0 || free[i] > free[best])) best = i;
    if (best < 0) break;
    free[best] -= 1;
    plan.set(workers[best].id, (plan.get(workers[best].id) ?? 0) + 1);
  }
  return plan;
}

export interface SchedulerOptions {
  leaseMs: number;
  maxHeldResults: number;
}

export class Scheduler {
  private turn = 0; // rotates which worker wins ties

  constructor(
    private readonly ledger: Ledger,
    private readonly opts: SchedulerOptions,
  ) {}

  /**
   * Leases queued groups to `workers` (ready ones only) and returns the Lease message for each
   * worker that got some, for the caller to send. `policyVersion` goes into every lease.
   */
  run(workers: readonly { id: string; capacity: number }[], policyVersion: number | null, now: number): Map<string, LeaseMsg> {
    const out = new Map<string, LeaseMsg>();
    const budget = Math.min(this.ledger.queuedCount, this.opts.maxHeldResults - this.ledger.inFlight);
    if (budget <= 0 || workers.length === 0) return out;
    const k = this.turn++ % workers.length;
    const rotated = [...workers.slice(k), ...workers.slice(0, k)];
    const plan = planLeases(
      rotated.map((w) => ({ id: w.id, capacity: w.capacity, load: this.ledger.loadOf(w.id) })),
      budget,
    );
    for (const [workerId, n] of plan) {
      const lease = this.ledger.lease(workerId, n, now);
      if (lease === null) break;
      out.set(workerId, {
        kind: Kind.Lease,
        leaseId: lease.leaseId,
        policyVersion,
        deadline: lease.deadline,
        ttlMs: this.opts.leaseMs,
        groups: lease.groups,
      });
    }
    return out;
  }
}
