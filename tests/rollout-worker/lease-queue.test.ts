import { describe, expect, it } from 'vitest';
import { LeaseQueue } from '../../src/rollout-worker/lease-queue.js';
import { Kind } from '../../src/shared/protocol.js';
import type { LeaseMsg } from '../../src/shared/protocol.js';

function lease(leaseId: string, ...ids: string[]): LeaseMsg {
  return {
    kind: Kind.Lease,
    leaseId,
    policyVersion: 3,
    deadline: 0,
    ttlMs: 60_000,
    groups: ids.map((groupId, i) => ({ groupId, promptIndex: i, prompt: 'p', meta: null, groupSize: 2 })),
  };
}

describe('LeaseQueue', () => {
  it('hands out groups oldest lease first, at most `max` per take', () => {
    const q = new LeaseQueue();
    expect(q.add(lease('L1', 'a', 'b', 'c'))).toBe(true);
    expect(q.add(lease('L2', 'd'))).toBe(true);
    expect(q.waitingGroups).toBe(4);
    expect(q.take(2).map((t) => [t.lease.leaseId, t.spec.groupId])).toEqual([['L1', 'a'], ['L1', 'b']]);
    expect(q.take(5).map((t) => t.spec.groupId)).toEqual(['c', 'd']);
    expect(q.take(5)).toEqual([]);
    expect(q.waitingGroups).toBe(0);
    expect(q.size).toBe(2); // taken but not reported
  });

  it('keeps a lease until every group is settled', () => {
    const q = new LeaseQueue();
    q.add(lease('L1', 'a', 'b', 'c'));
    const first = q.take(2);
    first.forEach((t) => q.settle(t));
    expect(q.size).toBe(1); // c still waits
    const [c] = q.take(1);
    expect(q.isLive(c)).toBe(true);
    q.settle(c);
    expect(q.size).toBe(0);
    expect(q.isLive(c)).toBe(false);
  });

  it('revoke and clear forget leases and count the groups not reported', () => {
    const q = new LeaseQueue();
    q.add(lease('L1', 'a', 'b'));
    q.add(lease('L2', 'c', 'd', 'e'));
    const [a] = q.take(1);
    q.settle(a);
    const [b] = q.take(1);
    expect(q.revoke('L1')).toBe(1); // b was being sampled
    expect(q.isLive(b)).toBe(false);
    expect(q.revoke('L1')).toBe(0);
    expect(q.clear()).toBe(3);
    expect(q.waitingGroups).toBe(0);
  });

  it('a result taken before a reconnect is not live under a new lease that reuses the id', () => {
    const q = new LeaseQueue();
    q.add(lease('L1', 'a'));
    const [old] = q.take(1);
    q.clear();
    q.add(lease('L1', 'x'));
    expect(q.isLive(old)).toBe(false);
    q.settle(old); // ignored: must not settle the new lease's group
    expect(q.waitingGroups).toBe(1);
  });

  it('ignores a repeated lease id and a lease with no groups', () => {
    const q = new LeaseQueue();
    q.add(lease('L1', 'a'));
    expect(q.add(lease('L1', 'b'))).toBe(false);
    expect(q.add(lease('L2'))).toBe(false);
    expect(q.take(9).map((t) => t.spec.groupId)).toEqual(['a']);
  });
});
