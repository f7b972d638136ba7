/**
 * Hostile input cannot grow the coordinator's memory or logs without bound (issue 16): offending
 * values are echoed as a short prefix, warning logs are rate-limited per peer, a peer that does
 * not read is terminated past maxBufferedBytes, and a malformed-frame fuzz gets only coded errors.
 * The process-level RSS bound is in tests/chaos/hostile.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { LogLimit } from '../../src/coordinator/log-limit.js';
import { Peer } from '../../src/coordinator/peer.js';
import { encodeMessage } from '../../src/shared/codec.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { ProtocolLogger } from '../../src/shared/protocol.js';
import { RawPeer, startTestCoordinator, until } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

/** A logger that keeps every line as the JSON the stderr logger would write. */
function capturingLog(): { log: ProtocolLogger; lines: string[]; bytes: () => number } {
  const lines: string[] = [];
  return {
    log: (level, event, fields) => void lines.push(JSON.stringify({ level, event, ...fields })),
    lines,
    bytes: () => lines.reduce((n, l) => n + l.length, 0),
  };
}

describe('hostile input', () => {
  it('echoes a short prefix of a 1 MiB kind, in replies and in logs', async () => {
    const cap = capturingLog();
    coord = await startTestCoordinator({ log: cap.log });
    const frame = encodeMessage({ kind: 'k'.repeat(1024 * 1024) } as never); // one buffer, sent 15 times
    const peers = await Promise.all([0, 1].map(() => RawPeer.join(coord!.url, 'worker')));
    for (const { peer } of peers) for (let i = 0; i < 15; i++) peer.sendRaw(frame);
    for (const { peer } of peers) await until(() => peer.all(Kind.Error).length === 15, 20_000, '15 errors');
    for (const { peer } of peers) {
      for (const e of peer.all(Kind.Error)) {
        expect(e.code).toBe(WireError.UnknownKind);
        expect(e.message.length).toBeLessThan(300);
        expect(e.message).toMatch(/^kind "kkkk.*\(1048576 chars\)/);
      }
    }
    expect(cap.bytes()).toBeLessThan(16 * 1024); // 30 frames of 1 MiB: a few lines of a few hundred bytes
    expect(cap.lines.every((l) => l.length < 2_000)).toBe(true);
  });

  it('rate-limits one peer\'s bad_frame lines and says how many it dropped', async () => {
    const cap = capturingLog();
    coord = await startTestCoordinator({ log: cap.log, maxBadFrames: 10_000 });
    const { peer } = await RawPeer.join(coord.url, 'worker');
    for (let i = 0; i < 500; i++) peer.sendRaw(Uint8Array.of(0xc1));
    await until(() => peer.all(Kind.Error).length === 500, 10_000, '500 errors');
    const bad = cap.lines.filter((l) => l.includes('"bad_frame"'));
    expect(bad.length).toBeGreaterThanOrEqual(8); // the burst
    expect(bad.length).toBeLessThan(20); // then about one a second
    await new Promise((r) => setTimeout(r, 1_100));
    peer.sendRaw(Uint8Array.of(0xc1));
    await until(() => cap.lines.some((l) => l.includes('"suppressed"')), 5_000, 'a line with the suppressed count');
  });

  it('answers a 10,000-frame malformed fuzz with coded errors only, bounded log and heap, and keeps serving', async () => {
    const FRAMES = 10_000; // the chaos run of issue 16 sent this many
    const cap = capturingLog();
    coord = await startTestCoordinator({ log: cap.log, maxBadFrames: 100_000 });
    const { peer } = await RawPeer.join(coord.url, 'worker');
    const codes = new Set<string>([WireError.BadFrame, WireError.UnknownKind, WireError.BadMessage, WireError.UnexpectedMessage]);
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % n;
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < FRAMES; i++) {
      const pick = rand(5);
      if (pick === 0) peer.sendRaw(randomBytes(1 + rand(64)));
      else if (pick === 1) peer.sendRaw(encodeMessage({ kind: rand(1_000), junk: 'x'.repeat(rand(5_000)) } as never));
      else if (pick === 2) peer.sendRaw(encodeMessage({ kind: Kind.Groups, leaseId: 'L'.repeat(rand(100_000)), results: 'nope' } as never));
      else if (pick === 3) peer.sendRaw(Buffer.from([0xff, 0xfe, 0x80, rand(256)])); // binary junk
      else peer.sendRaw(encodeMessage({ kind: Kind.Ready, policyVersion: -rand(10) - 1 }));
    }
    await until(() => peer.all(Kind.Error).length === FRAMES, 60_000, `${FRAMES} errors`);
    expect(peer.all(Kind.Error).every((e) => codes.has(e.code) && e.message.length <= 1_100)).toBe(true);
    expect(cap.bytes()).toBeLessThan(64 * 1024);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(200 * 1024 * 1024);
    const { welcome } = await RawPeer.join(coord.url, 'worker'); // still serving
    expect(welcome.sessionId).toBe('w2');
  });

  it('answers invalid UTF-8 in a text frame with BAD_FRAME, not a 1007 close', async () => {
    coord = await startTestCoordinator();
    const { peer } = await RawPeer.join(coord.url, 'worker');
    peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await peer.next(Kind.Error)).code).toBe(WireError.BadFrame);
    peer.send({ kind: Kind.Heartbeat, time: Date.now(), leaseIds: [] }); // still open
    expect(coord.stats().workers).toHaveLength(1);
  });

  it('terminates a peer whose unread send buffer passes maxBufferedBytes, once, and sends it nothing more', () => {
    const sent: unknown[] = [];
    let terminated = 0;
    const ws = { readyState: 1, bufferedAmount: 0, send: (m: unknown) => sent.push(m), terminate: () => (terminated += 1) };
    const peer = new Peer(ws as never, 'r', 0, 1);
    peer.maxBufferedBytes = 1_000;
    const told: number[] = [];
    peer.onBacklog = (b) => told.push(b);
    peer.send({ kind: Kind.Heartbeat, time: 0, leaseIds: [] });
    ws.bufferedAmount = 5_000;
    peer.send({ kind: Kind.Heartbeat, time: 0, leaseIds: [] });
    peer.send({ kind: Kind.Heartbeat, time: 0, leaseIds: [] });
    let err: Error | null | undefined;
    peer.sendFrame(new Uint8Array(8), (e) => (err = e));
    expect(sent).toHaveLength(1);
    expect(terminated).toBe(1);
    expect(told).toEqual([5_000]);
    expect(err).toBeInstanceOf(Error);
  });

  it('LogLimit: a burst, then one line per second, carrying the count it dropped', () => {
    const l = new LogLimit(3, 1, 0);
    expect([l.take(0), l.take(0), l.take(0), l.take(0), l.take(10)]).toEqual([0, 0, 0, null, null]);
    expect(l.take(1_100)).toBe(2);
    expect(l.take(1_100)).toBeNull();
  });
});
