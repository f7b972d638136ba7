import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { decodeMessage } from '../../src/shared/codec.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { LeaseMsg } from '../../src/shared/protocol.js';
import { Rng } from '../../src/shared/rng.js';
import { RawPeer, rolloutFor, sleep, spec, startTestCoordinator, until } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

async function readyWorker(url: string, capacity = 1, name = 'w') {
  const { peer, welcome } = await RawPeer.join(url, 'worker', { capacity, name });
  peer.send({ kind: Kind.Ready, policyVersion: 0 });
  return { peer, sessionId: welcome.sessionId };
}

describe('work accounting over the wire', () => {
  it('leases, forwards the result to the learner and records its verdict', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker, sessionId } = await readyWorker(coord.url, 2, 'alpha');
    learner.send({ kind: Kind.PolicyVersion, version: 4 });
    await worker.next(Kind.PolicyVersion);
    const specs = [spec('g1'), spec('g2'), spec('g3')];
    learner.send({ kind: Kind.Enqueue, groups: specs });

    const lease = await worker.next(Kind.Lease);
    expect(lease.groups).toEqual(specs.slice(0, 2)); // capacity 2
    expect(lease.policyVersion).toBe(4);
    expect(lease.ttlMs).toBeGreaterThan(0);
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(specs[0], 4)] });
    const r1 = await learner.next(Kind.GroupResult);
    expect(r1).toMatchObject({ sessionId, workerName: 'alpha', leaseId: lease.leaseId, attempts: 0, group: rolloutFor(specs[0], 4) });
    const lease2 = await worker.next(Kind.Lease); // g1 done frees one slot: g3 follows
    expect(lease2.groups.map((g) => g.groupId)).toEqual(['g3']);
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(specs[1], 4)] });
    worker.send({ kind: Kind.Groups, leaseId: lease2.leaseId, results: [rolloutFor(specs[2], 4)] });
    await learner.next(Kind.GroupResult, (m) => m.group.groupId === 'g3');

    learner.send({ kind: Kind.Verdict, groupId: 'g1', admitted: true, reason: 'ok' });
    learner.send({ kind: Kind.Verdict, groupId: 'g2', admitted: false, reason: 'stale' });
    learner.send({ kind: Kind.Verdict, groupId: 'nope', admitted: true, reason: 'ok' });
    expect((await learner.next(Kind.Error)).code).toBe(WireError.UnknownGroup);
    await until(() => coord?.stats().ledger.droppedStale === 1);
    expect(coord.stats().ledger).toMatchObject({ enqueued: 3, leased: 3, delivered: 3, admitted: 1, droppedStale: 1, awaiting: 1, done: 2 });
    expect(learner.all(Kind.GroupResult)).toHaveLength(3);
  });

  it('re-dispatches an expired lease, revokes it, and ignores its late result', async () => {
    coord = await startTestCoordinator({ leaseMs: 150, sweepMs: 10 });
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: slow } = await readyWorker(coord.url);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1')] });
    const lease = await slow.next(Kind.Lease);
    const { peer: fast } = await readyWorker(coord.url);
    expect((await slow.next(Kind.LeaseRevoked)).leaseId).toBe(lease.leaseId);
    const again = await fast.next(Kind.Lease);
    expect(again.groups.map((g) => g.groupId)).toEqual(['g1']);
    slow.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1'), 0, 'late')] });
    fast.send({ kind: Kind.Groups, leaseId: again.leaseId, results: [rolloutFor(spec('g1'), 0, 'fresh')] });
    const got = await learner.next(Kind.GroupResult);
    expect(got.group.completions[0].text).toBe('fresh');
    expect(got.attempts).toBe(1);
    await until(() => coord?.stats().ledger.staleLeaseResults === 1);
    expect(learner.all(Kind.GroupResult)).toHaveLength(1);
    expect(coord.stats().ledger).toMatchObject({ expiredLeases: 1, redispatched: 1, completed: 1 });
  });

  it('keeps a heartbeated lease past its lifetime', async () => {
    coord = await startTestCoordinator({ leaseMs: 800, sweepMs: 10 });
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await readyWorker(coord.url);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1')] });
    const lease = await worker.next(Kind.Lease);
    for (let i = 0; i < 24; i++) {
      worker.send({ kind: Kind.Heartbeat, time: Date.now(), leaseIds: [lease.leaseId] });
      await sleep(50); // 1.2 s in all, well past leaseMs
    }
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1'))] });
    await learner.next(Kind.GroupResult);
    expect(worker.all(Kind.LeaseRevoked)).toEqual([]);
    expect(coord.stats().ledger.expiredLeases).toBe(0);
  });

  it('re-dispatches the lease of a worker that disconnects; its old lease stays dead', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: doomed } = await readyWorker(coord.url, 2);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1'), spec('g2')] });
    const lease = await doomed.next(Kind.Lease);
    doomed.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1'))] });
    await learner.next(Kind.GroupResult);
    doomed.ws.terminate(); // no close handshake, like a killed process
    const { peer: heir } = await readyWorker(coord.url, 2);
    const again = await heir.next(Kind.Lease);
    expect(again.groups.map((g) => g.groupId)).toEqual(['g2']); // g1 was finished: not re-done
    // The same worker comes back in a new session and reports the old lease: ignored, counted.
    const { peer: back } = await readyWorker(coord.url, 1);
    back.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g2'), 0, 'zombie')] });
    heir.send({ kind: Kind.Groups, leaseId: again.leaseId, results: [rolloutFor(spec('g2'))] });
    await learner.next(Kind.GroupResult, (m) => m.group.groupId === 'g2');
    await until(() => coord?.stats().ledger.staleLeaseResults === 1);
    expect(learner.all(Kind.GroupResult).map((m) => m.group.completions[0].text)).toEqual(['ok', 'ok']);
    expect(coord.stats().ledger).toMatchObject({ releasedLeases: 1, redispatched: 1, completed: 2 });
  });

  it('never forwards a group twice, and rejects a partial group', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await readyWorker(coord.url, 2);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1'), spec('g2', 4)] });
    const lease = await worker.next(Kind.Lease);
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1')), rolloutFor(spec('g1'))] });
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1'))] });
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g2', 4))] });
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(spec('g1'))] }); // lease over: stale
    await learner.next(Kind.GroupResult, (m) => m.group.groupId === 'g2');
    await until(() => coord?.stats().ledger.staleLeaseResults === 1);
    expect(coord.stats().ledger.duplicates).toBe(2);
    expect(learner.all(Kind.GroupResult).map((m) => m.group.groupId)).toEqual(['g1', 'g2']);

    learner.send({ kind: Kind.Enqueue, groups: [spec('g3', 4)] });
    const l3 = await worker.next(Kind.Lease, (m) => m.groups[0].groupId === 'g3');
    const partial = rolloutFor(spec('g3', 4));
    partial.completions.pop();
    worker.send({ kind: Kind.Groups, leaseId: l3.leaseId, results: [partial] });
    const err = await worker.next(Kind.Error);
    expect(err).toMatchObject({ code: WireError.InvalidResult, ref: 'g3' });
    const retry = await worker.next(Kind.Lease, (m) => m.groups[0].groupId === 'g3');
    expect(retry.leaseId).not.toBe(l3.leaseId);
    expect(coord.stats().ledger).toMatchObject({ invalidResults: 1, redispatched: 1 });
  });

  it('gives a failing group up after maxGroupAttempts and tells the learner', async () => {
    coord = await startTestCoordinator({ maxGroupAttempts: 2 });
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await readyWorker(coord.url);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1')] });
    for (let i = 0; i < 2; i++) {
      const lease = await worker.next(Kind.Lease);
      worker.send({ kind: Kind.GroupFailed, leaseId: lease.leaseId, groupId: 'g1', code: 'GRPO_ERR_REWARD_TIMEOUT', message: `try ${i}` });
    }
    const gone = await learner.next(Kind.GroupExhausted);
    expect(gone).toMatchObject({ groupId: 'g1', failures: 2, code: WireError.TooManyAttempts });
    expect(gone.message).toMatch(/GRPO_ERR_REWARD_TIMEOUT: try 1/);
    learner.send({ kind: Kind.Verdict, groupId: 'g1', admitted: false, reason: 'failed' });
    await until(() => coord?.stats().ledger.failed === 1);
    expect(coord.stats().ledger).toMatchObject({ groupFailures: 2, exhausted: 1, redispatched: 1 });
  });

  it('holds results while the learner is away, re-sends unjudged ones, and pauses leasing at maxHeldResults', async () => {
    coord = await startTestCoordinator({ maxHeldResults: 2 });
    const first = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await readyWorker(coord.url, 4);
    first.peer.send({ kind: Kind.Enqueue, groups: ['g1', 'g2', 'g3'].map((id) => spec(id)) });
    const lease = await worker.next(Kind.Lease);
    expect(lease.groups.map((g) => g.groupId)).toEqual(['g1', 'g2']); // bound 2, though capacity is 4
    await first.peer.close();
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: lease.groups.map((s) => rolloutFor(s)) });
    await until(() => coord?.stats().ledger.completed === 2);
    expect(coord.stats().ledger.leased).toBe(2); // both held, none judged: no new lease

    const second = await RawPeer.join(coord.url, 'learner');
    const held = [await second.peer.next(Kind.GroupResult), await second.peer.next(Kind.GroupResult)];
    expect(held.map((m) => m.group.groupId)).toEqual(['g1', 'g2']);
    second.peer.send({ kind: Kind.Verdict, groupId: 'g1', admitted: true, reason: 'ok' });
    const l2 = await worker.next(Kind.Lease, (m) => m.leaseId !== lease.leaseId);
    expect(l2.groups.map((g) => g.groupId)).toEqual(['g3']);
    await second.peer.close();
    const third = await RawPeer.join(coord.url, 'learner');
    expect((await third.peer.next(Kind.GroupResult)).group.groupId).toBe('g2'); // not judged yet: sent again
    expect(coord.stats().ledger).toMatchObject({ delivered: 2, redelivered: 1, admitted: 1 });
  });

  it('treats Enqueue as idempotent per group id', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1'), spec('g2')] });
    learner.send({ kind: Kind.Enqueue, groups: [spec('g2'), spec('g3')] });
    await until(() => coord?.stats().ledger.enqueued === 3);
    expect(coord.stats().ledger).toMatchObject({ duplicateEnqueues: 1, queued: 3 });
  });

  it('delivers every group exactly once while workers misbehave at random (seeded)', async () => {
    coord = await startTestCoordinator({ leaseMs: 150, sweepMs: 10, maxGroupAttempts: 3 });
    const url = coord.url;
    const rng = new Rng(1234);
    const { peer: learner } = await RawPeer.join(url, 'learner');
    const seen = new Map<string, number>();
    learner.ws.on('message', (data: Buffer) => {
      const m = decodeMessage(new Uint8Array(data));
      if (m.kind !== Kind.GroupResult && m.kind !== Kind.GroupExhausted) return;
      const id = m.kind === Kind.GroupResult ? m.group.groupId : m.groupId;
      seen.set(id, (seen.get(id) ?? 0) + 1);
      const ok = m.kind === Kind.GroupResult;
      learner.send({ kind: Kind.Verdict, groupId: id, admitted: ok, reason: ok ? 'ok' : 'failed' });
    });
    const peers: RawPeer[] = [];
    const stale: LeaseMsg[] = []; // leases of dead sessions, reported later by their successors
    const rejoins = new Set<Promise<void>>(); // successors still joining: awaited before the coordinator closes
    const timers = new Set<NodeJS.Timeout>();
    const joinErrors: unknown[] = [];

    const join = async (): Promise<void> => {
      const { peer } = await RawPeer.join(url, 'worker', { capacity: 2 });
      peers.push(peer);
      peer.ws.on('message', (data: Buffer) => {
        const lease = decodeMessage(new Uint8Array(data));
        if (lease.kind !== Kind.Lease) return;
        const dice = rng.next();
        const answer = () => peer.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: lease.groups.map((g) => rolloutFor(g)) });
        if (dice < 0.45) {
          answer();
          if (rng.next() < 0.3) answer(); // a duplicate report
        } else if (dice < 0.6) {
          const [first, ...rest] = lease.groups;
          peer.send({ kind: Kind.GroupFailed, leaseId: lease.leaseId, groupId: first.groupId, code: 'GRPO_ERR_REWARD', message: 'boom' });
          if (rest.length > 0) peer.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: rest.map((g) => rolloutFor(g)) });
        } else if (dice < 0.8) {
          setTimeout(answer, 300); // too slow: the lease expires first
        } else {
          stale.push(lease);
          peer.ws.terminate(); // dies mid-lease; a successor joins and reports the dead lease
          const timer = setTimeout(() => {
            timers.delete(timer);
            const rejoin = join().then(() => {
              const old = stale.shift();
              const heir = peers.at(-1);
              if (old && heir) heir.send({ kind: Kind.Groups, leaseId: old.leaseId, results: old.groups.map((g) => rolloutFor(g)) });
              heir?.send({ kind: Kind.Ready, policyVersion: 0 });
            });
            rejoins.add(rejoin);
            rejoin.then(() => rejoins.delete(rejoin), (err: unknown) => joinErrors.push(err));
          }, 20);
          timers.add(timer);
          return;
        }
      });
    };
    for (let i = 0; i < 3; i++) await join();
    const ids = Array.from({ length: 30 }, (_, i) => `g${i}`);
    learner.send({ kind: Kind.Enqueue, groups: ids.map((id) => spec(id)) });
    for (const p of peers) p.send({ kind: Kind.Ready, policyVersion: 0 });

    await until(() => coord?.stats().ledger.done === ids.length, 20_000, 'all groups judged');
    expect([...seen.keys()].sort()).toEqual([...ids].sort());
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    const l = coord.stats().ledger;
    expect(l.admitted + l.failed).toBe(ids.length);
    expect(l.completed + l.exhausted).toBe(ids.length);
    expect(l.redispatched).toBeGreaterThan(0);
    for (const t of timers) clearTimeout(t);
    await Promise.allSettled([...rejoins]); // a join still in flight when the test ends would hit a closed port
    expect(joinErrors).toEqual([]);
    for (const p of peers) p.ws.terminate();
  }, 30_000);
});
