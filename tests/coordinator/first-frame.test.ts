/**
 * The coordinator's answers to a bad first frame and to kinds a role may not send, as
 * docs/protocol.md sections 3 and 8 state them, fed as raw frames: one coded Error, then close
 * 4001 for anything but a valid Hello first; the role check before the field check afterwards.
 */
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { encodeMessage } from '../../src/shared/codec.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import { RawPeer, sleep, startTestCoordinator } from './helpers.js';

// plain msgpack, as a peer in another language writes it (no field validation on this side)
const pack = (v: unknown): Uint8Array => new Packr({ useRecords: false }).pack(v);

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

const HELLO = { kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'worker', name: 'w', capacity: 1, policyVersion: null };

/** Sends `frames` on a fresh connection; returns the Errors it got and its close code. */
async function firstFrames(...frames: (Uint8Array | string)[]) {
  const peer = await RawPeer.connect(coord!.url);
  for (const f of frames) peer.sendRaw(f);
  const closed = await peer.closed;
  return { errors: peer.all(Kind.Error), kinds: peer.received.map((m) => m.kind), closed };
}

describe('first frame', () => {
  it('answers a Hello missing policyVersion with BAD_MESSAGE and closes 4001; a valid Hello after it is not welcomed', async () => {
    coord = await startTestCoordinator();
    const { policyVersion: _, ...noVersion } = HELLO;
    const r = await firstFrames(pack(noVersion), encodeMessage(HELLO as never));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0].code).toBe(WireError.BadMessage);
    expect(r.errors[0].message).toContain('Hello.policyVersion');
    expect(r.closed.code).toBe(CloseCode.HelloRequired);
    expect(r.kinds).not.toContain(Kind.Welcome);
    expect(coord.stats().workers).toEqual([]);
  });

  it('answers a text frame first with HELLO_REQUIRED and closes 4001', async () => {
    coord = await startTestCoordinator();
    const r = await firstFrames(JSON.stringify(HELLO));
    expect(r.errors.map((e) => e.code)).toEqual([WireError.HelloRequired]);
    expect(r.errors[0].message).toContain('text frame');
    expect(r.closed.code).toBe(CloseCode.HelloRequired);
  });

  it('answers undecodable bytes, a chunk frame or another kind first with HELLO_REQUIRED and closes 4001', async () => {
    coord = await startTestCoordinator();
    const chunk = encodeMessage({ kind: Kind.WeightsChunk, version: 1, index: 0, bytes: new Uint8Array(8) });
    for (const frame of [Uint8Array.of(0xc1, 0x00), pack([1, 2]), chunk, encodeMessage(SAMPLES[Kind.Ready]), pack({ kind: 99 })]) {
      const r = await firstFrames(frame);
      expect(r.errors.map((e) => e.code)).toEqual([WireError.HelloRequired]);
      expect(r.closed.code).toBe(CloseCode.HelloRequired);
    }
  });

  it('answers a Hello with a bad role or capacity with BAD_MESSAGE and 4001, like a missing field', async () => {
    coord = await startTestCoordinator();
    for (const hello of [{ ...HELLO, role: 'judge' }, { ...HELLO, capacity: 0 }, { ...HELLO, policyVersion: -1 }]) {
      const r = await firstFrames(pack(hello));
      expect(r.errors.map((e) => e.code)).toEqual([WireError.BadMessage]);
      expect(r.closed.code).toBe(CloseCode.HelloRequired);
    }
  });
});

describe('kinds a role may not send', () => {
  it('answers a GroupResult from a worker with UNEXPECTED_MESSAGE whether it is well-formed or not, and keeps the connection', async () => {
    coord = await startTestCoordinator();
    const { peer } = await RawPeer.join(coord.url, 'worker');
    peer.send(SAMPLES[Kind.GroupResult]);
    expect((await peer.next(Kind.Error)).code).toBe(WireError.UnexpectedMessage);
    peer.sendRaw(pack({ kind: Kind.GroupResult, sessionId: 'w1' })); // most fields missing
    const malformed = await peer.next(Kind.Error);
    expect(malformed.code).toBe(WireError.UnexpectedMessage);
    expect(malformed.message).toContain('GroupResult from a worker');
    peer.sendRaw(pack({ ...HELLO, capacity: 'x' })); // a second Hello, malformed
    expect((await peer.next(Kind.Error)).code).toBe(WireError.UnexpectedMessage);
    // a kind it may send, malformed: the fields are what is wrong
    peer.sendRaw(pack({ kind: Kind.Groups, leaseId: 'L1' }));
    const groups = await peer.next(Kind.Error);
    expect(groups.code).toBe(WireError.BadMessage);
    expect(groups.message).toContain('Groups.results');
    await sleep(50);
    expect(coord.stats().workers).toHaveLength(1); // still connected
    await peer.close();
  });

  it('answers a malformed Enqueue from a worker as unexpected and from the learner as a bad message', async () => {
    coord = await startTestCoordinator();
    const { peer: worker } = await RawPeer.join(coord.url, 'worker');
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const bad = pack({ kind: Kind.Enqueue, groups: [{ groupId: '' }] });
    worker.sendRaw(bad);
    learner.sendRaw(bad);
    expect((await worker.next(Kind.Error)).code).toBe(WireError.UnexpectedMessage);
    expect((await learner.next(Kind.Error)).code).toBe(WireError.BadMessage);
    await worker.close();
    await learner.close();
  });
});
