import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { resolveToken } from '../../src/coordinator/auth.js';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { startCoordinator } from '../../src/coordinator/main.js';
import { encodeMessage } from '../../src/shared/codec.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import { RawPeer, spec, startTestCoordinator, until } from './helpers.js';
import { SAMPLES } from '../shared/protocol-samples.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

function httpGet(port: number, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    })
      .on('error', reject)
      .end();
  });
}

/** Tries an upgrade; resolves with the HTTP status of a refusal, or 101 when it opened. */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<{ status: number; messages: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    let messages = 0;
    ws.on('message', () => (messages += 1));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, messages });
      ws.terminate();
    });
    ws.on('open', () => {
      resolve({ status: 101, messages });
      ws.close();
    });
    ws.on('error', () => {});
  });
}

describe('coordinator server', () => {
  it('serves /healthz as JSON with the ledger counters, and 404 elsewhere', async () => {
    coord = await startTestCoordinator();
    const h = await httpGet(coord.port, '/healthz');
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ ok: true, protocolVersion: PROTOCOL_VERSION, learner: null, ledger: { enqueued: 0, admitted: 0 } });
    expect((await httpGet(coord.port, '/nope')).status).toBe(404);
    expect(coord.url).toBe(`ws://127.0.0.1:${coord.port}`);
  });

  it('refuses a missing or wrong token with HTTP 401 before any message, and admits the right one', async () => {
    coord = await startTestCoordinator({ token: 's3cret' });
    expect(await upgradeStatus(coord.url, {})).toEqual({ status: 401, messages: 0 });
    expect(await upgradeStatus(coord.url, { authorization: 'Bearer wrong' })).toEqual({ status: 401, messages: 0 });
    expect(await upgradeStatus(coord.url, { authorization: 'Basic s3cret' })).toEqual({ status: 401, messages: 0 });
    expect((await upgradeStatus(coord.url, { authorization: 'Bearer s3cret' })).status).toBe(101);
    const { welcome } = await RawPeer.join(coord.url, 'worker', { token: 's3cret' });
    expect(welcome.sessionId).toBe('w1');
  });

  it('takes the token from GRPO_TOKEN and will not run open on a public address', () => {
    expect(resolveToken(undefined, '127.0.0.1', { GRPO_TOKEN: 'env' })).toBe('env');
    expect(resolveToken('flag', '127.0.0.1', { GRPO_TOKEN: 'env' })).toBe('flag');
    expect(resolveToken(undefined, '127.0.0.1', {})).toBeNull();
    expect(() => resolveToken(undefined, '0.0.0.0', {})).toThrowError(/without a worker token/);
    expect(() => resolveToken('', '127.0.0.1', {})).toThrowError(/empty/);
  });

  it('answers garbage and unknown kinds with coded errors while other peers keep working', async () => {
    coord = await startTestCoordinator();
    const { peer: bad } = await RawPeer.join(coord.url, 'worker');
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const { peer: good } = await RawPeer.join(coord.url, 'worker', { capacity: 1 });
    good.send({ kind: Kind.Ready, policyVersion: 0 });

    bad.sendRaw(Uint8Array.of(0xc1, 0xff, 0x00));
    expect((await bad.next(Kind.Error)).code).toBe(WireError.BadFrame);
    bad.send({ kind: 42, x: 1 } as never);
    expect((await bad.next(Kind.Error)).code).toBe(WireError.UnknownKind);
    bad.sendRaw('{"kind":5}');
    expect((await bad.next(Kind.Error)).code).toBe(WireError.BadFrame);
    bad.send({ kind: Kind.Ready } as never);
    expect((await bad.next(Kind.Error)).message).toMatch(/Ready\.policyVersion/);
    bad.send({ kind: Kind.Enqueue, groups: [spec('x')] });
    expect((await bad.next(Kind.Error)).code).toBe(WireError.UnexpectedMessage);

    learner.sendRaw(Uint8Array.of(0x92, 0x01)); // the learner's garbage does not end its session either
    expect((await learner.next(Kind.Error)).code).toBe(WireError.BadFrame);
    learner.send({ kind: Kind.Enqueue, groups: [spec('g1')] });
    const lease = await good.next(Kind.Lease);
    expect(lease.groups.map((g) => g.groupId)).toEqual(['g1']);
    expect(bad.all(Kind.Lease)).toEqual([]); // never Ready, so never leased
    expect(coord.stats().workers).toHaveLength(2);
  });

  it('closes a peer that keeps sending garbage (4000), and only that peer', async () => {
    coord = await startTestCoordinator({ maxBadFrames: 3 });
    const { peer: bad } = await RawPeer.join(coord.url, 'worker');
    const { peer: good } = await RawPeer.join(coord.url, 'worker');
    for (let i = 0; i < 3; i++) bad.sendRaw(Uint8Array.of(0xc1));
    expect((await bad.closed).code).toBe(CloseCode.BadFrames);
    good.send({ kind: Kind.Heartbeat, time: Date.now(), leaseIds: [] });
    good.send({ kind: Kind.Ready, policyVersion: 0 });
    await until(() => coord?.stats().workers.length === 1, 5_000, 'bad peer removed');
    expect(good.ws.readyState).toBe(WebSocket.OPEN);
    expect(coord.stats().workers.map((w) => w.sessionId)).toEqual(['w2']);
  });

  it('enforces the handshake: Hello first (4001), matching version (4002), one learner (4003)', async () => {
    coord = await startTestCoordinator();
    const early = await RawPeer.connect(coord.url);
    early.send({ kind: Kind.Ready, policyVersion: 0 });
    expect((await early.next(Kind.Error)).code).toBe(WireError.HelloRequired);
    expect((await early.closed).code).toBe(CloseCode.HelloRequired);

    const old = await RawPeer.connect(coord.url);
    old.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION + 1, role: 'worker', name: 'x', capacity: 1, policyVersion: null });
    expect((await old.next(Kind.Error)).code).toBe(WireError.ProtocolVersion);
    expect((await old.closed).code).toBe(CloseCode.ProtocolVersion);

    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const second = await RawPeer.connect(coord.url);
    second.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'learner', name: 'l2', capacity: 0, policyVersion: null });
    expect((await second.closed).code).toBe(CloseCode.LearnerTaken);
    learner.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'learner', name: 'again', capacity: 0, policyVersion: null });
    expect((await learner.next(Kind.Error)).code).toBe(WireError.UnexpectedMessage);
    await learner.close();
    const { welcome } = await RawPeer.join(coord.url, 'learner'); // the seat is free again
    expect(welcome.sessionId).toBe('l2');
  });

  it('closes a connection that never says Hello', async () => {
    coord = await startTestCoordinator({ helloTimeoutMs: 100, sweepMs: 20 });
    const silent = await RawPeer.connect(coord.url);
    expect((await silent.closed).code).toBe(CloseCode.HelloRequired);
  });

  it('enforces maxPayload (1009) and checks its options', async () => {
    coord = await startTestCoordinator({ maxPayloadBytes: 4096, weightsChunkBytes: 1024 });
    const { peer } = await RawPeer.join(coord.url, 'learner');
    peer.sendRaw(encodeMessage({ kind: Kind.Enqueue, groups: [{ ...spec('big'), prompt: 'x'.repeat(8192) }] }));
    expect((await peer.closed).code).toBe(1009);
    await expect(startCoordinator({ port: 0, maxPayloadBytes: 1024, weightsChunkBytes: 1024 })).rejects.toSatisfy((e) => isGrpoError(e, 'GRPO_ERR_CONFIG'));
    await expect(startCoordinator({ port: 0, heartbeatMs: 100, peerTimeoutMs: 50 })).rejects.toThrowError(/peerTimeoutMs/);
  });

  it('terminates a peer that stops answering pings', async () => {
    coord = await startTestCoordinator({ heartbeatMs: 30, peerTimeoutMs: 150, sweepMs: 10 });
    const { peer } = await RawPeer.join(coord.url, 'worker', { autoPong: false }); // sends nothing after Hello
    const { code } = await peer.closed;
    expect(code).toBe(1006); // terminated, no close handshake
    expect(peer.all(Kind.Heartbeat).length).toBeGreaterThan(0); // it was pinged and sent Heartbeats first
  });

  it('forwards the learner RunSpec to connected workers and to workers that join later, before weights', async () => {
    coord = await startTestCoordinator();
    const { peer: early } = await RawPeer.join(coord.url, 'worker');
    const { peer: learner } = await RawPeer.join(coord.url, 'learner');
    const spec1 = SAMPLES[Kind.RunSpec];
    learner.send(spec1);
    expect((await early.next(Kind.RunSpec)).spec).toEqual(spec1.spec);
    const { peer: late } = await RawPeer.join(coord.url, 'worker');
    expect((await late.next(Kind.RunSpec)).spec.runId).toBe('run-1');
    early.ws.close();
    late.ws.close();
    learner.ws.close();
  });
});
