/**
 * The worker's leases: groups waiting to be sampled (first come, first served across leases) and
 * which leases still want results. A lease leaves the queue when every one of its groups has been
 * reported, when the coordinator revokes it, or when the connection closes (the coordinator then
 * re-dispatches it, and a result for it would be counted stale).
 *
 * A taken group keeps a reference to its lease's entry, not just the id, so a result finished
 * after a reconnect is never sent under a lease of the new session that happens to reuse the id
 * (a restarted coordinator counts lease ids from 1 again).
 */
import type { GroupSpec, LeaseMsg } from '../shared/protocol.js';

export interface LeaseEntry {
  readonly leaseId: string;
  readonly policyVersion: number | null; // the newest version the learner had published when leased
  readonly waiting: GroupSpec[]; // not yet taken for sampling, in lease order
  unreported: number; // groups waiting or being sampled, not yet reported
}

/** One group taken for sampling, with the lease it came from. */
export interface TakenGroup {
  readonly lease: LeaseEntry;
  readonly spec: GroupSpec;
}

export class LeaseQueue {
  private readonly leases = new Map<string, LeaseEntry>(); // insertion order = arrival order

  /** Queues a lease's groups. A lease id already held is ignored (false): the coordinator never repeats one. */
  add(msg: LeaseMsg): boolean {
    if (this.leases.has(msg.leaseId) || msg.groups.length === 0) return false;
    this.leases.set(msg.leaseId, {
      leaseId: msg.leaseId,
      policyVersion: msg.policyVersion,
      waiting: [...msg.groups],
      unreported: msg.groups.length,
    });
    return true;
  }

  /** Forgets a lease; returns how many of its groups were not reported (waiting or being sampled). */
  revoke(leaseId: string): number {
    const entry = this.leases.get(leaseId);
    if (entry === undefined) return 0;
    this.leases.delete(leaseId);
    return entry.unreported;
  }

  /** Forgets every lease (the connection closed); returns the groups that were not reported. */
  clear(): number {
    let n = 0;
    for (const entry of this.leases.values()) n += entry.unreported;
    this.leases.clear();
    return n;
  }

  /** Groups queued and not yet taken, over all leases. */
  get waitingGroups(): number {
    let n = 0;
    for (const entry of this.leases.values()) n += entry.waiting.length;
    return n;
  }

  /** Whether a waiting group carries its own sampling seed (the learner's deterministic mode). */
  get seeded(): boolean {
    for (const entry of this.leases.values()) if (entry.waiting.some((s) => s.seed !== undefined)) return true;
    return false;
  }

  /** Leases held (some groups not reported). */
  get size(): number {
    return this.leases.size;
  }

  /** Up to `max` waiting groups, oldest lease first; they stay unreported until settle(). */
  take(max: number): TakenGroup[] {
    const out: TakenGroup[] = [];
    for (const entry of this.leases.values()) {
      while (out.length < max && entry.waiting.length > 0) out.push({ lease: entry, spec: entry.waiting.shift() as GroupSpec });
      if (out.length >= max) break;
    }
    return out;
  }

  /** Whether a result for `t` is still wanted: its lease was neither revoked nor lost with the connection. */
  isLive(t: TakenGroup): boolean {
    return this.leases.get(t.lease.leaseId) === t.lease;
  }

  /** `t` was reported (result or failure); the lease goes once all its groups are. */
  settle(t: TakenGroup): void {
    if (!this.isLive(t)) return;
    t.lease.unreported -= 1;
    if (t.lease.unreported <= 0 && t.lease.waiting.length === 0) this.leases.delete(t.lease.leaseId);
  }
}
