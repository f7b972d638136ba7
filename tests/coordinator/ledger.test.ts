import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/coordinator/ledger.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { GroupRollout, GroupSpec, VerdictReason } from '../../src/shared/protocol.js';

const OPTS = { leaseMs: 100, maxGroupAttempts: 3, maxRedispatches: 4 };
const spec = (id: string, groupSize = 2): GroupSpec => ({ groupId: id, promptIndex: Number(id.slice(1)) || 0, prompt: `p${id}`, meta: null, groupSize });
const result = (id: string, n = 2, version = 0): GroupRollout => ({
  groupId: id,
  policyVersion: version,
  promptTokens: [1],
  completions: Array.from({ length: n }, () => ({ tokens: [3], logprobs: [-1], text: 'x', rewards: { r: 1 }, finishReason: 'stop' as const })),
});

describe('Ledger', () => {
  it('leases, completes, delivers once and takes the verdict', () => {
    const l = new Ledger(OPTS);
    expect(l.enqueue([spec('g1'), spec('g2'), spec('g3')])).toEqual({ accepted: 3, duplicates: 0 });
    const lease = l.lease('w1', 2, 0);
    expect(lease?.groups.map((g) => g.groupId)).toEqual(['g1', 'g2']);
    expect(l.loadOf('w1')).toBe(2);
    const out = l.complete('w1', 'worker-1', lease?.leaseId ?? '', [result('g1')]);
    expect(out).toEqual({ staleLease: false, invalid: [], stray: [], duplicates: [] });
    expect(l.stateOf('g1')).toBe('awaiting');
    const sent = l.takeUndelivered();
    expect(sent.map((e) => e.msg.kind)).toEqual([Kind.GroupResult]);
    expect(sent[0].msg).toMatchObject({ sessionId: 'w1', workerName: 'worker-1', attempts: 0, group: { groupId: 'g1' } });
    expect(l.takeUndelivered()).toEqual([]);
    expect(l.verdict('g1', 'ok')).toBe('ok');
    expect(l.verdict('g1', 'ok')).toBe('repeat');
    expect(l.verdict('nope', 'ok')).toBe('unknown');
    expect(l.stateOf('g1')).toBe('done');
    expect(l.counters).toMatchObject({ enqueued: 3, leases: 1, leased: 2, completed: 1, delivered: 1, admitted: 1, repeatVerdicts: 1, unknownVerdicts: 1 });
  });

  it('ignores an id it already knows, in any state', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1')]);
    const lease = l.lease('w1', 1, 0);
    l.complete('w1', 'w', lease?.leaseId ?? '', [result('g1')]);
    l.verdict('g1', 'stale');
    expect(l.enqueue([spec('g1'), spec('g2'), spec('g2')])).toEqual({ accepted: 1, duplicates: 2 });
    expect(l.counters.droppedStale).toBe(1);
  });

  it('re-queues the groups of an expired lease first, and heartbeats keep a lease alive', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1'), spec('g2'), spec('g3')]);
    const a = l.lease('w1', 1, 0);
    const b = l.lease('w2', 1, 0);
    l.heartbeat('w2', [b?.leaseId ?? ''], 60);
    l.heartbeat('w2', [a?.leaseId ?? ''], 60); // not w2's lease: no effect
    expect(l.expire(99)).toEqual([]);
    expect(l.expire(100).map((x) => x.leaseId)).toEqual([a?.leaseId]);
    expect(l.stateOf('g1')).toBe('queued');
    expect(l.lease('w3', 1, 100)?.groups[0].groupId).toBe('g1'); // retried before g3
    const late = l.complete('w1', 'w', a?.leaseId ?? '', [result('g1')]);
    expect(late.staleLease).toBe(true);
    expect(l.counters).toMatchObject({ expiredLeases: 1, redispatched: 1, staleLeaseResults: 1, completed: 0 });
  });

  it('re-queues the leases of a worker that left', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1'), spec('g2')]);
    l.lease('w1', 2, 0);
    expect(l.releaseWorker('w1')).toHaveLength(1);
    expect(l.gauges()).toMatchObject({ queued: 2, leasedGroups: 0, activeLeases: 0 });
  });

  it('forwards a group once: duplicates and strays are counted, not forwarded', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1'), spec('g2'), spec('g3')]);
    const a = l.lease('w1', 2, 0);
    l.lease('w2', 1, 0);
    const out = l.complete('w1', 'w', a?.leaseId ?? '', [result('g1'), result('g1'), result('g3')]);
    expect(out.duplicates).toEqual(['g1']);
    expect(out.stray).toEqual(['g3']); // leased to w2, not in this lease
    expect(l.takeUndelivered()).toHaveLength(1);
    expect(l.counters).toMatchObject({ duplicates: 1, strayResults: 1, completed: 1 });
  });

  it('treats a partial group as a failure and gives a group up after maxGroupAttempts', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1', 4)]);
    const a = l.lease('w1', 1, 0);
    const out = l.complete('w1', 'w', a?.leaseId ?? '', [result('g1', 3)]);
    expect(out.invalid[0].message).toMatch(/partial group g1: 3 of 4/);
    const b = l.lease('w1', 1, 0);
    expect(l.fail('w1', b?.leaseId ?? '', 'g1', 'GRPO_ERR_REWARD', 'threw')).toBe('ok');
    const c = l.lease('w1', 1, 0);
    expect(l.fail('w1', c?.leaseId ?? '', 'g1', 'GRPO_ERR_REWARD', 'threw again')).toBe('ok');
    expect(l.fail('w1', c?.leaseId ?? '', 'g1', 'GRPO_ERR_REWARD', 'x')).toBe('stale'); // lease c ended
    expect(l.lease('w1', 1, 0)).toBeNull();
    const [e] = l.takeUndelivered();
    expect(e.msg).toMatchObject({ kind: Kind.GroupExhausted, groupId: 'g1', failures: 3, code: WireError.TooManyAttempts });
    expect(e.msg.kind === Kind.GroupExhausted && e.msg.message).toMatch(/threw again/);
    expect(l.verdict('g1', 'failed')).toBe('ok');
    expect(l.counters).toMatchObject({ invalidResults: 1, groupFailures: 2, exhausted: 1, failed: 1, redispatched: 2 });
  });

  it('gives up a group whose leases keep dying (poison prompt)', () => {
    const l = new Ledger({ ...OPTS, maxRedispatches: 1 });
    l.enqueue([spec('g1')]);
    l.lease('w1', 1, 0);
    l.releaseWorker('w1');
    l.lease('w2', 1, 0);
    l.releaseWorker('w2');
    expect(l.takeUndelivered()[0].msg).toMatchObject({ kind: Kind.GroupExhausted, code: WireError.TooManyRedispatches, redispatches: 2 });
  });

  it('sends what the learner has not judged again after it reconnects', () => {
    const l = new Ledger(OPTS);
    l.enqueue([spec('g1'), spec('g2')]);
    const a = l.lease('w1', 2, 0);
    l.complete('w1', 'w', a?.leaseId ?? '', [result('g1'), result('g2')]);
    expect(l.takeUndelivered()).toHaveLength(2);
    l.verdict('g1', 'ok');
    l.learnerLost();
    expect(l.takeUndelivered().map((e) => e.groupId)).toEqual(['g2']);
    expect(l.counters).toMatchObject({ delivered: 2, redelivered: 1 });
    expect(l.inFlight).toBe(1);
  });
});

// --- model test: exactly once under random interleavings --------------------------------------

type Op =
  | { op: 'enqueue'; n: number; dup: boolean }
  | { op: 'lease'; w: number; max: number }
  | { op: 'complete'; w: number; lease: number; pick: number; dup: boolean; partial: boolean }
  | { op: 'fail'; w: number; lease: number; pick: number }
  | { op: 'heartbeat'; w: number }
  | { op: 'advance'; ms: number }
  | { op: 'release'; w: number }
  | { op: 'deliver' }
  | { op: 'learnerLost' }
  | { op: 'verdict'; pick: number; reason: VerdictReason };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('enqueue' as const), n: fc.integer({ min: 1, max: 4 }), dup: fc.boolean() }),
  fc.record({ op: fc.constant('lease' as const), w: fc.integer({ min: 0, max: 2 }), max: fc.integer({ min: 1, max: 3 }) }),
  // Results mostly come from the lease's own worker (w = -1), sometimes from another one.
  fc.record({
    op: fc.constant('complete' as const),
    w: fc.integer({ min: -4, max: 2 }).map((w) => Math.max(-1, w)),
    lease: fc.nat(),
    pick: fc.nat(),
    dup: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
    partial: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
  }),
  fc.record({ op: fc.constant('fail' as const), w: fc.integer({ min: -4, max: 2 }).map((w) => Math.max(-1, w)), lease: fc.nat(), pick: fc.nat() }),
  fc.record({ op: fc.constant('heartbeat' as const), w: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 150 }) }),
  fc.record({ op: fc.constant('release' as const), w: fc.integer({ min: 0, max: 2 }) }),
  fc.constant({ op: 'deliver' as const }),
  fc.constant({ op: 'learnerLost' as const }),
  fc.record({ op: fc.constant('verdict' as const), pick: fc.nat(), reason: fc.constantFrom<VerdictReason>('ok', 'stale', 'duplicate', 'failed') }),
);

function runModel(ops: Op[]): void {
  const l = new Ledger({ leaseMs: 100, maxGroupAttempts: 2, maxRedispatches: 3 });
  const workers = ['w0', 'w1', 'w2'];
  const ids: string[] = [];
  const issued: { leaseId: string; workerId: string; groups: string[] }[] = [];
  const forwarded = new Map<string, object>(); // group id -> the one message ever forwarded for it
  const onThisConnection = new Set<string>(); // sent since the last learnerLost
  const delivered = new Set<string>();
  let now = 0;

  const take = (): void => {
    for (const e of l.takeUndelivered()) {
      expect(onThisConnection.has(e.groupId)).toBe(false); // never twice to one learner connection
      onThisConnection.add(e.groupId);
      delivered.add(e.groupId);
      const first = forwarded.get(e.groupId);
      if (first === undefined) forwarded.set(e.groupId, e.msg);
      else expect(e.msg).toBe(first); // a redelivery is the same result, never a second one
      expect(l.stateOf(e.groupId)).toBe('awaiting');
    }
  };
  const check = (): void => {
    const g = l.gauges();
    const states = ids.map((id) => l.stateOf(id));
    expect(states.includes('unknown')).toBe(false);
    expect(g.queued + g.leasedGroups + g.awaiting + g.done).toBe(ids.length);
    expect(states.filter((s) => s === 'done').length).toBe(g.done);
    expect(l.counters.completed + l.counters.exhausted).toBe(g.awaiting + g.done);
    for (const id of forwarded.keys()) expect(['awaiting', 'done']).toContain(l.stateOf(id));
  };

  for (const o of ops) {
    switch (o.op) {
      case 'enqueue': {
        const fresh = Array.from({ length: o.n }, (_, i) => `g${ids.length + i}`);
        const again = o.dup && ids.length > 0 ? [ids[0]] : [];
        l.enqueue([...fresh, ...again].map((id) => spec(id)));
        ids.push(...fresh);
        break;
      }
      case 'lease': {
        const lease = l.lease(workers[o.w], o.max, now);
        if (lease) issued.push({ leaseId: lease.leaseId, workerId: lease.workerId, groups: lease.groups.map((s) => s.groupId) });
        break;
      }
      case 'complete': {
        if (issued.length === 0) break;
        const lease = issued[(issued.length - 1 - (o.lease % 3) + issued.length) % issued.length]; // mostly recent leases
        const groups = lease.groups.slice(0, 1 + (o.pick % lease.groups.length));
        const results = groups.map((id) => result(id, o.partial ? 1 : 2));
        if (o.dup) results.push(result(groups[0]));
        l.complete(o.w < 0 ? lease.workerId : workers[o.w], 'w', lease.leaseId, results);
        break;
      }
      case 'fail': {
        if (issued.length === 0) break;
        const lease = issued[(issued.length - 1 - (o.lease % 3) + issued.length) % issued.length];
        l.fail(o.w < 0 ? lease.workerId : workers[o.w], lease.leaseId, lease.groups[o.pick % lease.groups.length], 'GRPO_ERR_REWARD', 'x');
        break;
      }
      case 'heartbeat':
        l.heartbeat(workers[o.w], l.leasesOf(workers[o.w]), now);
        break;
      case 'advance':
        now += o.ms;
        l.expire(now);
        break;
      case 'release':
        l.releaseWorker(workers[o.w]);
        break;
      case 'deliver':
        take();
        break;
      case 'learnerLost':
        l.learnerLost();
        onThisConnection.clear();
        break;
      case 'verdict': {
        const pending = [...delivered].filter((id) => l.stateOf(id) === 'awaiting');
        if (pending.length > 0) expect(l.verdict(pending[o.pick % pending.length], o.reason)).toBe('ok');
        break;
      }
    }
    check();
  }

  // Drain: one healthy worker finishes everything; the learner judges everything.
  for (let round = 0; round < 50 && l.gauges().done < ids.length; round++) {
    now += 1000;
    l.expire(now);
    for (let lease = l.lease('drain', 1000, now); lease !== null; lease = l.lease('drain', 1000, now)) {
      l.complete('drain', 'd', lease.leaseId, lease.groups.map((s) => result(s.groupId)));
    }
    take();
    for (const id of ids) if (l.stateOf(id) === 'awaiting') l.verdict(id, 'ok');
    check();
  }
  expect(l.gauges().done).toBe(ids.length);
  expect([...forwarded.keys()].sort()).toEqual([...ids].sort());
  const c = l.counters;
  expect(c.admitted + c.droppedStale + c.droppedDuplicate + c.failed).toBe(ids.length);
  expect(c.completed + c.exhausted).toBe(ids.length);
}

describe('Ledger model', () => {
  it('forwards every enqueued group exactly once under random interleavings', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), runModel), { seed: 20_241_122, numRuns: 300 });
  });
});
