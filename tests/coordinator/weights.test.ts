import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { WeightsMsg } from '../../src/shared/protocol.js';
import { encodeWeights, WeightsAssembler, weightsMessages } from '../../src/shared/weights-wire.js';
import { RawPeer, startTestCoordinator, until } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

/** One tensor of `n` floats whose values identify the version. */
function weights(version: number, n = 1000): NamedHostTensors {
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = version + i / n;
  return new Map([['lm_head.weight', { shape: [n], data }]]);
}

function upload(learner: RawPeer, version: number, n = 1000, chunkBytes = 1024, epoch = 0): void {
  for (const m of weightsMessages(encodeWeights(weights(version, n), version, 'f32', chunkBytes))) learner.send(m.kind === Kind.WeightsBegin && epoch > 0 ? { ...m, epoch } : m);
}

/** Rebuilds what a raw peer received, returning the last complete version's first value. */
function assembled(peer: RawPeer): { version: number; first: number } | null {
  const a = new WeightsAssembler();
  let last = null;
  for (const m of peer.received) {
    if (m.kind !== Kind.WeightsBegin && m.kind !== Kind.WeightsChunk && m.kind !== Kind.WeightsEnd) continue;
    const done = a.pushAndDecode(m as WeightsMsg);
    if (done) last = { version: done.version, first: done.tensors.get('lm_head.weight')?.data[0] ?? NaN };
  }
  return last;
}

describe('weights fan-out', () => {
  it('fans a verified upload out to workers and announces the version', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await RawPeer.join(coord.url, 'worker');
    upload(learner, 1);
    await worker.next(Kind.WeightsEnd);
    expect((await worker.next(Kind.PolicyVersion)).version).toBe(1);
    expect(assembled(worker)).toEqual({ version: 1, first: 1 });
    expect(coord.stats().weights).toMatchObject({ version: 1, bytes: 4000, versionsReceived: 1, transfersCompleted: 1 });
    expect(coord.stats().policyVersion).toBe(1);
  });

  it('gives a late joiner the current version right after Welcome, and skips one that has it', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    upload(learner, 3);
    upload(learner, 4);
    await until(() => coord?.stats().weights.version === 4);
    const { peer: late, welcome } = await RawPeer.join(coord.url, 'worker');
    expect(welcome).toMatchObject({ policyVersion: 4, weightsVersion: 4 });
    await late.next(Kind.WeightsEnd);
    expect(late.received.slice(0, 3).map((m) => m.kind)).toEqual([Kind.Welcome, Kind.RunSpec, Kind.WeightsBegin]);
    expect(assembled(late)).toEqual({ version: 4, first: 4 });
    const { peer: current } = await RawPeer.join(coord.url, 'worker', { policyVersion: 4 });
    current.send({ kind: Kind.Ready, policyVersion: 4 });
    await until(() => coord?.stats().workers.some((w) => w.ready) === true);
    expect(current.all(Kind.WeightsBegin)).toEqual([]);
  });

  it('rejects a corrupted upload with a checksum error and keeps the previous version', async () => {
    coord = await startTestCoordinator();
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: worker } = await RawPeer.join(coord.url, 'worker');
    upload(learner, 1);
    await worker.next(Kind.WeightsEnd);
    const msgs = weightsMessages(encodeWeights(weights(2), 2, 'f32', 1024));
    const c = msgs[2];
    if (c.kind === Kind.WeightsChunk) msgs[2] = { ...c, bytes: c.bytes.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    for (const m of msgs) learner.send(m);
    const err = await learner.next(Kind.Error);
    expect(err.code).toBe(WireError.WeightsChecksum);
    expect(coord.stats().weights).toMatchObject({ version: 1, uploadErrors: 1 });
    learner.send({ kind: Kind.WeightsChunk, version: 9, index: 0, bytes: new Uint8Array(8) });
    expect((await learner.next(Kind.Error)).code).toBe(WireError.WeightsSequence);
    upload(learner, 3); // the learner carries on
    await worker.next(Kind.WeightsEnd, (m) => m.version === 3);
    expect(worker.all(Kind.WeightsBegin).map((m) => m.version)).toEqual([1, 3]);
  });

  it('gives a slow worker the newest version, never a backlog of stale ones', async () => {
    const n = 2 * 1024 * 1024; // 8 MiB per version: more than the kernel buffers between the two sockets
    coord = await startTestCoordinator({ highWaterMarkBytes: 256 * 1024 });
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: fast } = await RawPeer.join(coord.url, 'worker');
    const { peer: slow } = await RawPeer.join(coord.url, 'worker');
    slow.ws.pause(); // stops reading its socket
    for (let v = 1; v <= 5; v++) {
      upload(learner, v, n, 256 * 1024);
      await fast.next(Kind.WeightsEnd, (m) => m.version === v); // each version completes at the coordinator
    }
    expect(slow.all(Kind.WeightsEnd)).toEqual([]);
    slow.ws.resume();
    await slow.next(Kind.WeightsEnd, (m) => m.version === 5, 20_000);
    const begins = slow.all(Kind.WeightsBegin).map((m) => m.version);
    expect(begins).toEqual([1, 5]); // v1 cut short at a chunk boundary, v2-v4 never started
    expect(slow.all(Kind.WeightsEnd).map((m) => m.version)).toEqual([5]);
    const chunkBytes = slow.all(Kind.WeightsChunk).reduce((s, m) => s + m.bytes.byteLength, 0);
    expect(chunkBytes).toBeLessThan(2 * 4 * n);
    expect(assembled(slow)).toEqual({ version: 5, first: 5 });
    expect(fast.all(Kind.WeightsEnd).map((m) => m.version)).toEqual([1, 2, 3, 4, 5]);
    expect(coord.stats().weights.transfersAbandoned).toBe(1);
  }, 30_000);

  it('rolls back to the version of a learner resumed from an older checkpoint, in a new epoch', async () => {
    coord = await startTestCoordinator();
    const first = await RawPeer.join(coord.url, 'learner', { newEpoch: true });
    expect(first.welcome.epoch).toBeUndefined(); // epoch 0 travels as an absent field
    const { peer: worker } = await RawPeer.join(coord.url, 'worker');
    upload(first.peer, 5);
    await worker.next(Kind.WeightsEnd, (m) => m.version === 5);
    await first.peer.close();
    const { peer: resumed, welcome } = await RawPeer.join(coord.url, 'learner', { policyVersion: 3, epoch: 0, newEpoch: true });
    expect(welcome).toMatchObject({ policyVersion: 3, weightsVersion: null, epoch: 1 });
    expect((await worker.next(Kind.PolicyVersion, (m) => m.version === 3)).version).toBe(3);
    upload(resumed, 3, 1000, 1024, 1);
    const begin = await worker.next(Kind.WeightsBegin, (m) => m.version === 3);
    expect(begin.epoch).toBe(1);
    await worker.next(Kind.WeightsEnd, (m) => m.version === 3);
    expect(assembled(worker)).toEqual({ version: 3, first: 3 });
    expect(coord.stats().epoch).toBe(1);
  });

  it("refuses an upload of another epoch than the learner's, and ignores its chunks", async () => {
    coord = await startTestCoordinator();
    const { peer: learner, welcome } = await RawPeer.join(coord.url, 'learner', { epoch: 4, newEpoch: true });
    expect(welcome.epoch).toBe(5);
    const { peer: worker } = await RawPeer.join(coord.url, 'worker');
    upload(learner, 7, 1000, 1024, 4); // the epoch before: refused once, its 4 chunks and End dropped quietly
    const err = await learner.next(Kind.Error, (m) => m.code === 'GRPO_ERR_STALE_EPOCH');
    expect(err.message).toMatch(/epoch 4 refused: the run is in epoch 5/);
    upload(learner, 6, 1000, 1024, 5);
    await worker.next(Kind.WeightsEnd, (m) => m.version === 6);
    expect(learner.received.filter((m) => m.kind === Kind.Error)).toHaveLength(1);
    expect(assembled(worker)).toEqual({ version: 6, first: 6 });
  });
});
