/**
 * The work ledger: where every prompt group is, and what happened to it. A pure, synchronous
 * state machine (time comes in as `now` arguments, nothing here does I/O), so it can be tested
 * alone against a model.
 *
 * Each group id the learner enqueues is in exactly one state:
 *   queued -> leased (to one lease of one worker) -> awaiting (a result or an exhaustion notice
 *   is in the outbox to the learner) -> done (the learner's Verdict came; only the id is kept).
 * A lease that expires or dies with its worker puts its unfinished groups back in the queue
 * (redispatched); results for a lease that is no longer current are ignored (staleLeaseResults);
 * a second result for a group is never forwarded (duplicates).
 */
import { GrpoError } from '../shared/errors.js';
import { Kind, WireError } from '../shared/protocol.js';
import type { GroupExhaustedMsg, GroupResultMsg, GroupRollout, GroupSpec, VerdictReason } from '../shared/protocol.js';

export interface LedgerOptions {
  leaseMs: number; // lease lifetime (ms), renewed by heartbeats
  maxGroupAttempts: number; // failures (GroupFailed or invalid result) before a group is given up
  maxRedispatches: number; // expired/dead leases before a group is given up
}

export type GroupState = 'queued' | 'leased' | 'awaiting' | 'done' | 'unknown';

interface GroupRecord {
  spec: GroupSpec;
  state: 'queued' | 'leased' | 'awaiting';
  dispatches: number; // leases so far
  failures: number;
  redispatches: number;
  lastError: string;
}

export interface LeaseRecord {
  leaseId: string;
  workerId: string;
  deadline: number; // ms since the epoch
  pending: Set<string>; // group ids not yet finished or failed
  groups: GroupSpec[];
}

export interface OutboxEntry {
  groupId: string;
  msg: GroupResultMsg | GroupExhaustedMsg;
  sent: boolean; // sent to the current learner connection
  everSent: boolean;
}

export interface LedgerCounters {
  enqueued: number; // new group ids accepted
  duplicateEnqueues: number; // Enqueue of an id already known (ignored)
  leases: number; // Lease messages
  leased: number; // groups put in leases (a group leased twice counts twice)
  redispatched: number; // groups put back in the queue (expiry, disconnect, failure)
  expiredLeases: number;
  releasedLeases: number; // leases that died with their worker's connection
  staleLeaseResults: number; // results and failures for a lease no longer current (ignored)
  duplicates: number; // results for a group already finished (never forwarded twice)
  strayResults: number; // results for a group that is not part of the (current) lease
  invalidResults: number; // partial or inconsistent groups (counted as a failure of the group)
  groupFailures: number; // GroupFailed reports
  completed: number; // groups with a first valid result (put in the outbox)
  exhausted: number; // groups given up (GroupExhausted put in the outbox)
  delivered: number; // outbox entries sent to the learner for the first time
  redelivered: number; // outbox entries sent again after the learner reconnected
  admitted: number; // Verdict ok
  droppedStale: number; // Verdict stale
  droppedDuplicate: number; // Verdict duplicate
  failed: number; // Verdict failed
  repeatVerdicts: number; // a Verdict for a group already done (ignored)
  unknownVerdicts: number; // a Verdict for an id never seen (answered with an Error)
  refusedResults: number; // results the learner refused with a code (forwarded to their worker)
}

export interface LedgerGauges {
  queued: number;
  leasedGroups: number;
  activeLeases: number;
  awaiting: number;
  done: number;
}

export interface CompleteOutcome {
  staleLease: boolean;
  invalid: { groupId: string; message: string }[];
  stray: string[];
  duplicates: string[];
}

/** A group's result is whole: groupSize completions, each with one log-probability per token. */
export function validateRollout(spec: GroupSpec, r: GroupRollout): string | null {
  if (r.completions.length !== spec.groupSize) {
    return `partial group ${spec.groupId}: ${r.completions.length} of ${spec.groupSize} completions`;
  }
  for (let i = 0; i < r.completions.length; i++) {
    const c = r.completions[i];
    if (c.tokens.length !== c.logprobs.length) {
      return `group ${spec.groupId} completion ${i}: ${c.tokens.length} tokens but ${c.logprobs.length} logprobs`;
    }
  }
  return null;
}

export class Ledger {
  private readonly groups = new Map<string, GroupRecord>();
  private readonly done = new Set<string>();
  private readonly fresh: string[] = []; // FIFO of new ids, read from `head`
  private head = 0;
  private readonly retry: string[] = []; // re-queued ids, served before fresh ones (they are older)
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly outbox = new Map<string, OutboxEntry>(); // insertion order = delivery order
  private leasedGroupCount = 0;
  private leaseSeq = 0;
  readonly counters: LedgerCounters = {
    enqueued: 0, duplicateEnqueues: 0, leases: 0, leased: 0, redispatched: 0, expiredLeases: 0,
    releasedLeases: 0, staleLeaseResults: 0, duplicates: 0, strayResults: 0, invalidResults: 0,
    groupFailures: 0, completed: 0, exhausted: 0, delivered: 0, redelivered: 0, admitted: 0,
    droppedStale: 0, droppedDuplicate: 0, failed: 0, repeatVerdicts: 0, unknownVerdicts: 0, refusedResults: 0,
  };

  constructor(private readonly opts: LedgerOptions) {
    if (opts.maxGroupAttempts < 1 || opts.maxRedispatches < 0 || opts.leaseMs <= 0) {
      throw new GrpoError('GRPO_ERR_CONFIG', `ledger options ${JSON.stringify(opts)}: need leaseMs > 0, maxGroupAttempts >= 1, maxRedispatches >= 0`);
    }
  }

  stateOf(groupId: string): GroupState {
    if (this.done.has(groupId)) return 'done';
    return this.groups.get(groupId)?.state ?? 'unknown';
  }

  gauges(): LedgerGauges {
    return {
      queued: this.queuedCount,
      leasedGroups: this.leasedGroupCount,
      activeLeases: this.leases.size,
      awaiting: this.outbox.size,
      done: this.done.size,
    };
  }

  get queuedCount(): number {
    return this.fresh.length - this.head + this.retry.length;
  }

  /** Groups leased or finished but not yet judged by the learner (bounded by maxHeldResults). */
  get inFlight(): number {
    return this.leasedGroupCount + this.outbox.size;
  }

  /** Adds new groups to the queue; ids already known (in any state) are ignored and counted. */
  enqueue(specs: readonly GroupSpec[]): { accepted: number; duplicates: number } {
    let accepted = 0;
    for (const spec of specs) {
      if (this.groups.has(spec.groupId) || this.done.has(spec.groupId)) {
        this.counters.duplicateEnqueues += 1;
        continue;
      }
      this.groups.set(spec.groupId, { spec, state: 'queued', dispatches: 0, failures: 0, redispatches: 0, lastError: '' });
      this.fresh.push(spec.groupId);
      accepted += 1;
    }
    this.counters.enqueued += accepted;
    return { accepted, duplicates: specs.length - accepted };
  }

  /** Takes up to `max` queued groups into a new lease for `workerId`; null when none are queued. */
  lease(workerId: string, max: number, now: number): LeaseRecord | null {
    const ids: string[] = [];
    while (ids.length < max && this.queuedCount > 0) ids.push(this.popQueued());
    if (ids.length === 0) return null;
    const lease: LeaseRecord = {
      leaseId: `L${++this.leaseSeq}`,
      workerId,
      deadline: now + this.opts.leaseMs,
      pending: new Set(ids),
      groups: [],
    };
    for (const id of ids) {
      const rec = this.groups.get(id) as GroupRecord;
      rec.state = 'leased';
      rec.dispatches += 1;
      lease.groups.push(rec.spec);
    }
    this.leases.set(lease.leaseId, lease);
    this.leasedGroupCount += ids.length;
    this.counters.leases += 1;
    this.counters.leased += ids.length;
    return lease;
  }

  private popQueued(): string {
    if (this.retry.length > 0) return this.retry.shift() as string;
    const id = this.fresh[this.head++];
    if (this.head > 1024 && this.head * 2 > this.fresh.length) {
      this.fresh.splice(0, this.head); // compact the consumed prefix now and then
      this.head = 0;
    }
    return id;
  }

  /** Groups a worker holds in its leases right now. */
  loadOf(workerId: string): number {
    let n = 0;
    for (const l of this.leases.values()) if (l.workerId === workerId) n += l.pending.size;
    return n;
  }

  leasesOf(workerId: string): string[] {
    return [...this.leases.values()].filter((l) => l.workerId === workerId).map((l) => l.leaseId);
  }

  /** Extends the deadlines of the listed leases that `workerId` holds; others are ignored. */
  heartbeat(workerId: string, leaseIds: readonly string[], now: number): void {
    for (const id of leaseIds) {
      const l = this.leases.get(id);
      if (l !== undefined && l.workerId === workerId) l.deadline = now + this.opts.leaseMs;
    }
  }

  /** Ends every lease whose deadline has passed and re-queues its unfinished groups. */
  expire(now: number): LeaseRecord[] {
    const expired = [...this.leases.values()].filter((l) => l.deadline <= now);
    for (const l of expired) this.endLease(l);
    this.counters.expiredLeases += expired.length;
    return expired;
  }

  /** Ends every lease of a worker whose connection closed and re-queues their groups. */
  releaseWorker(workerId: string): LeaseRecord[] {
    const released = [...this.leases.values()].filter((l) => l.workerId === workerId);
    for (const l of released) this.endLease(l);
    this.counters.releasedLeases += released.length;
    return released;
  }

  private endLease(l: LeaseRecord): void {
    this.leases.delete(l.leaseId);
    this.leasedGroupCount -= l.pending.size;
    for (const id of l.pending) {
      const rec = this.groups.get(id) as GroupRecord;
      rec.redispatches += 1;
      if (rec.redispatches > this.opts.maxRedispatches) {
        this.exhaust(rec, WireError.TooManyRedispatches, `its leases expired or died ${rec.redispatches} times (limit ${this.opts.maxRedispatches})`);
      } else {
        this.requeue(rec);
      }
    }
    l.pending.clear();
  }

  private requeue(rec: GroupRecord): void {
    rec.state = 'queued';
    this.retry.push(rec.spec.groupId);
    this.counters.redispatched += 1;
  }

  /** A lease that is current and held by this worker, or null (stale). */
  private currentLease(workerId: string, leaseId: string): LeaseRecord | null {
    const l = this.leases.get(leaseId);
    return l !== undefined && l.workerId === workerId ? l : null;
  }

  /** Takes a group out of its lease; the lease ends when nothing is left in it. */
  private settle(l: LeaseRecord, groupId: string): void {
    l.pending.delete(groupId);
    this.leasedGroupCount -= 1;
    if (l.pending.size === 0) this.leases.delete(l.leaseId);
  }

  /** Worker results for one lease. Valid first results go to the outbox; the rest are counted. */
  complete(workerId: string, workerName: string, leaseId: string, results: readonly GroupRollout[]): CompleteOutcome {
    const out: CompleteOutcome = { staleLease: false, invalid: [], stray: [], duplicates: [] };
    const lease = this.currentLease(workerId, leaseId);
    if (lease === null) {
      out.staleLease = true;
      this.counters.staleLeaseResults += results.length;
      return out;
    }
    for (const r of results) {
      if (!lease.pending.has(r.groupId)) {
        const s = this.stateOf(r.groupId);
        if (s === 'awaiting' || s === 'done') {
          out.duplicates.push(r.groupId);
          this.counters.duplicates += 1;
        } else {
          out.stray.push(r.groupId);
          this.counters.strayResults += 1;
        }
        continue;
      }
      const rec = this.groups.get(r.groupId) as GroupRecord;
      this.settle(lease, r.groupId);
      const why = validateRollout(rec.spec, r);
      if (why !== null) {
        out.invalid.push({ groupId: r.groupId, message: why });
        this.counters.invalidResults += 1;
        this.failAttempt(rec, WireError.InvalidResult, why);
        continue;
      }
      rec.state = 'awaiting';
      this.counters.completed += 1;
      const msg: GroupResultMsg = {
        kind: Kind.GroupResult,
        sessionId: workerId,
        workerName,
        leaseId,
        attempts: rec.dispatches - 1,
        group: r,
      };
      this.outbox.set(r.groupId, { groupId: r.groupId, msg, sent: false, everSent: false });
    }
    return out;
  }

  /** A worker gave up on one group of its lease: re-queue it, or give it up after maxGroupAttempts. */
  fail(workerId: string, leaseId: string, groupId: string, code: string, message: string): 'ok' | 'stale' | 'stray' {
    const lease = this.currentLease(workerId, leaseId);
    if (lease === null) {
      this.counters.staleLeaseResults += 1;
      return 'stale';
    }
    if (!lease.pending.has(groupId)) {
      this.counters.strayResults += 1;
      return 'stray';
    }
    this.counters.groupFailures += 1;
    this.settle(lease, groupId);
    this.failAttempt(this.groups.get(groupId) as GroupRecord, code, message);
    return 'ok';
  }

  private failAttempt(rec: GroupRecord, code: string, message: string): void {
    rec.failures += 1;
    rec.lastError = `${code}: ${message}`;
    if (rec.failures >= this.opts.maxGroupAttempts) {
      this.exhaust(rec, WireError.TooManyAttempts, `failed ${rec.failures} times (limit ${this.opts.maxGroupAttempts})`);
    } else {
      this.requeue(rec);
    }
  }

  private exhaust(rec: GroupRecord, code: WireError, why: string): void {
    rec.state = 'awaiting';
    this.counters.exhausted += 1;
    const last = rec.lastError === '' ? '' : `; last error ${rec.lastError}`;
    const msg: GroupExhaustedMsg = {
      kind: Kind.GroupExhausted,
      groupId: rec.spec.groupId,
      promptIndex: rec.spec.promptIndex,
      failures: rec.failures,
      redispatches: rec.redispatches,
      code,
      message: `group ${rec.spec.groupId} (prompt ${rec.spec.promptIndex}) given up: ${why}${last}`,
    };
    this.outbox.set(rec.spec.groupId, { groupId: rec.spec.groupId, msg, sent: false, everSent: false });
  }

  /** Outbox entries not yet sent to the current learner connection, marked sent. */
  takeUndelivered(): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    for (const e of this.outbox.values()) {
      if (e.sent) continue;
      e.sent = true;
      if (e.everSent) this.counters.redelivered += 1;
      else this.counters.delivered += 1;
      e.everSent = true;
      out.push(e);
    }
    return out;
  }

  /** The learner connection closed: everything it has not judged is sent again to the next one. */
  learnerLost(): void {
    for (const e of this.outbox.values()) e.sent = false;
  }

  /** The worker session whose result awaits a verdict for `groupId`, if one does. */
  resultSession(groupId: string): string | null {
    const e = this.outbox.get(groupId);
    return e !== undefined && e.msg.kind === Kind.GroupResult ? e.msg.sessionId : null;
  }

  /** The learner's judgement of an outbox entry; the group is done after it. */
  verdict(groupId: string, reason: VerdictReason): 'ok' | 'repeat' | 'unknown' {
    if (!this.outbox.has(groupId)) {
      if (this.done.has(groupId)) {
        this.counters.repeatVerdicts += 1;
        return 'repeat';
      }
      this.counters.unknownVerdicts += 1;
      return 'unknown';
    }
    this.outbox.delete(groupId);
    this.groups.delete(groupId);
    this.done.add(groupId);
    const key = ({ ok: 'admitted', stale: 'droppedStale', duplicate: 'droppedDuplicate', failed: 'failed' } as const)[reason];
    this.counters[key] += 1;
    return 'ok';
  }
}
