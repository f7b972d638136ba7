import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import type { GrpoError } from '../../src/shared/errors.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import type { Message } from '../../src/shared/protocol.js';
import { encodeWeights, weightsMessages } from '../../src/shared/weights-wire.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import type { ProtocolClientOptions, ReceivedWeights } from '../../src/shared/ws-client.js';
import { rolloutFor, sleep, spec, startTestCoordinator, until } from '../coordinator/helpers.js';
import { SAMPLES } from './protocol-samples.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function coordinator(opts: Parameters<typeof startTestCoordinator>[0] = {}): Promise<CoordinatorHandle> {
  const c = await startTestCoordinator(opts);
  cleanup.push(() => c.close());
  return c;
}

function client(opts: Partial<ProtocolClientOptions> & Pick<ProtocolClientOptions, 'url' | 'role'>): ProtocolClient {
  const c = new ProtocolClient({ name: opts.role, token: null, reconnectInitialMs: 20, reconnectMaxMs: 100, ...opts });
  cleanup.push(() => c.close());
  // as the real learner does: a RunSpec after every Welcome (workers get weights only after one)
  if (opts.role === 'learner') c.onEvent('welcome', () => c.send(SAMPLES[Kind.RunSpec]));
  return c;
}

function weights(version: number, n = 64): NamedHostTensors {
  return new Map([['model.norm.weight', { shape: [n], data: new Float32Array(n).fill(version) }]]);
}

/** A worker that loads every version it receives, says Ready, and answers leases at once. */
function autoWorker(url: string, name = 'w', capacity = 2) {
  const c = client({ url, role: 'worker', name, capacity });
  const loaded: ReceivedWeights[] = [];
  c.onEvent('weights', (w) => {
    loaded.push(w);
    c.send({ kind: Kind.Ready, policyVersion: w.version });
  });
  c.on(Kind.Lease, (lease) => {
    c.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: lease.groups.map((g) => rolloutFor(g, lease.policyVersion ?? 0)) });
  });
  return { c, loaded };
}

describe('ProtocolClient', () => {
  it('runs a learner and a worker through weights, a lease, a result and a verdict', async () => {
    const coord = await coordinator();
    const learner = client({ url: coord.url, role: 'learner' });
    learner.on(Kind.GroupResult, (r) => learner.send({ kind: Kind.Verdict, groupId: r.group.groupId, admitted: true, reason: 'ok' }));
    const welcome = await learner.start();
    expect(welcome).toMatchObject({ role: 'learner', sessionId: 'l1', policyVersion: null });
    await learner.publishWeights(weights(1), 1, 'bf16', 64);

    const { c: worker, loaded } = autoWorker(coord.url);
    await worker.start();
    await until(() => loaded.length === 1, 5_000, 'weights loaded');
    expect(loaded[0].version).toBe(1);
    expect([...(loaded[0].tensors.get('model.norm.weight')?.data ?? [])]).toEqual(new Array(64).fill(1));
    expect(worker.weightsVersion).toBe(1);

    learner.send({ kind: Kind.Enqueue, groups: [spec('g1'), spec('g2'), spec('g3')] });
    await until(() => coord.stats().ledger.admitted === 3, 5_000, 'all admitted');
    expect(coord.stats().ledger).toMatchObject({ delivered: 3, duplicates: 0, staleLeaseResults: 0 });
    expect(worker.activeLeases()).toEqual([]);
  });

  it('stops with GRPO_ERR_AUTH on a refused token and takes GRPO_TOKEN from the environment', async () => {
    const coord = await coordinator({ token: 'right' });
    const bad = client({ url: coord.url, role: 'worker', token: 'wrong' });
    const fatal: GrpoError[] = [];
    bad.onEvent('fatal', (e) => fatal.push(e));
    await expect(bad.start()).rejects.toMatchObject({ code: WireError.Auth });
    expect(fatal.map((e) => e.code)).toEqual([WireError.Auth]);
    process.env.GRPO_TOKEN = 'right';
    try {
      const good = new ProtocolClient({ url: coord.url, role: 'worker', name: 'env' });
      cleanup.push(() => good.close());
      expect((await good.start()).role).toBe('worker');
    } finally {
      delete process.env.GRPO_TOKEN;
    }
  });

  it('reconnects to a restarted coordinator: re-sends Ready and re-uploads the weights it lacks', async () => {
    const first = await startTestCoordinator();
    const port = first.port;
    const learner = client({ url: first.url, role: 'learner' });
    await learner.start();
    await learner.publishWeights(weights(7), 7, 'f32', 64);
    const { c: worker, loaded } = autoWorker(first.url);
    const welcomes: number[] = [];
    const drops: number[] = [];
    worker.onEvent('welcome', (w) => welcomes.push(w.serverTime));
    worker.onEvent('disconnect', (d) => drops.push(d.code));
    await worker.start();
    await until(() => loaded.length === 1);
    await first.close();
    await until(() => drops.length === 1);
    expect(drops).toEqual([CloseCode.ShuttingDown]);

    const second = await coordinator({ port });
    await until(() => second.stats().weights.version === 7, 5_000, 'weights re-uploaded');
    await until(() => welcomes.length === 2, 5_000, 'worker back');
    learner.send({ kind: Kind.Enqueue, groups: [spec('after')] });
    await until(() => second.stats().ledger.completed === 1, 5_000, 'leased after reconnect'); // Ready was re-sent
    expect(loaded.map((w) => w.version)).toEqual([7]); // it said it holds v7: not sent again
  });

  it('keeps its leases alive with heartbeats while it works, and forgets them once reported', async () => {
    const coord = await coordinator({ leaseMs: 800, heartbeatMs: 40, peerTimeoutMs: 2_000, sweepMs: 10 });
    const learner = client({ url: coord.url, role: 'learner' });
    await learner.start();
    const worker = client({ url: coord.url, role: 'worker' });
    await worker.start();
    worker.send({ kind: Kind.Ready, policyVersion: 0 });
    const leaseP = worker.next(Kind.Lease);
    learner.send({ kind: Kind.Enqueue, groups: [spec('slow')] });
    const lease = await leaseP;
    expect(worker.activeLeases()).toEqual([lease.leaseId]);
    await sleep(1_200); // a long rollout, past leaseMs
    expect(coord.stats().ledger.expiredLeases).toBe(0);
    const resultP = learner.next(Kind.GroupResult);
    worker.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: [rolloutFor(lease.groups[0])] });
    expect(worker.activeLeases()).toEqual([]);
    expect((await resultP).leaseId).toBe(lease.leaseId);
  });

  it('recovers from corrupted weights by reconnecting and receiving them again', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => new Promise((r) => wss.close(r)));
    await new Promise((r) => wss.once('listening', r));
    let connections = 0;
    wss.on('connection', (ws) => {
      const n = ++connections;
      ws.on('message', (data: Buffer) => {
        const msg = decodeMessage(new Uint8Array(data));
        if (msg.kind !== Kind.Hello) return;
        const welcome: Message = {
          kind: Kind.Welcome, protocolVersion: PROTOCOL_VERSION, sessionId: `w${n}`, role: 'worker', policyVersion: 2,
          weightsVersion: 2, heartbeatMs: 1_000, peerTimeoutMs: 10_000, leaseMs: 60_000, maxPayloadBytes: 1 << 20, serverTime: Date.now(),
        };
        ws.send(encodeMessage(welcome));
        for (const m of weightsMessages(encodeWeights(weights(2), 2, 'f16', 64))) {
          const bad = n === 1 && m.kind === Kind.WeightsChunk && m.index === 1;
          ws.send(encodeMessage(bad ? { ...m, bytes: m.bytes.map((b) => b ^ 0xff) } : m));
        }
      });
    });
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    const { c: worker, loaded } = autoWorker(url);
    const errors: string[] = [];
    worker.onEvent('error', (e) => errors.push(e.code));
    await worker.start();
    await until(() => loaded.length === 1, 5_000, 'good weights after reconnect');
    expect(errors).toEqual([WireError.WeightsChecksum]);
    expect(connections).toBe(2);
    expect(loaded[0].version).toBe(2);
  });

  it('supersedes an upload in progress with a newer version', async () => {
    const coord = await coordinator();
    const learner = client({ url: coord.url, role: 'learner', highWaterMarkBytes: 64 * 1024 });
    await learner.start();
    // 8 MiB: more than the socket buffers take in one go, so v1 is still being sent when v2 comes.
    const n = 2 * 1024 * 1024;
    const v1 = learner.publishWeights(weights(1, n), 1, 'f32', 64 * 1024);
    const v2 = learner.publishWeights(weights(2, n), 2, 'f32', 64 * 1024);
    await Promise.all([v1, v2]);
    await until(() => coord.stats().weights.version === 2);
    expect(coord.stats().weights.versionsReceived).toBe(1); // v1 was cut short and never completed
  });

  it('a learner resumed from an older checkpoint rolls the coordinator back to its version', async () => {
    const coord = await coordinator();
    const before = client({ url: coord.url, role: 'learner' });
    await before.start();
    await before.publishWeights(weights(5), 5, 'f32', 64);
    await before.close();
    const resumed = client({ url: coord.url, role: 'learner' });
    const uploaded = resumed.publishWeights(weights(3), 3, 'f32', 64); // before start: sent after the Welcome
    const welcome = await resumed.start();
    expect(welcome).toMatchObject({ policyVersion: 3, weightsVersion: null });
    await uploaded;
    await until(() => coord.stats().weights.version === 3, 5_000, 'older weights accepted');
    expect(coord.stats().policyVersion).toBe(3);
  });

  it('closes cleanly and stays closed', async () => {
    const coord = await coordinator();
    const worker = client({ url: coord.url, role: 'worker' });
    await worker.start();
    expect(worker.connected).toBe(true);
    await worker.close();
    expect(worker.connected).toBe(false);
    expect(worker.send({ kind: Kind.Ready, policyVersion: 0 })).toBe(false);
    await until(() => coord.stats().workers.length === 0);
    await sleep(100);
    expect(coord.stats().workers.length).toBe(0); // no reconnect
  });

  it('logs and counts a message kind nothing handles, and counts none the client consumes or a handler takes', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => new Promise((r) => wss.close(r)));
    await new Promise((r) => wss.once('listening', r));
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer) => {
        if (decodeMessage(new Uint8Array(data)).kind !== Kind.Hello) return;
        const welcome: Message = {
          kind: Kind.Welcome, protocolVersion: PROTOCOL_VERSION, sessionId: 'w1', role: 'worker', policyVersion: null,
          weightsVersion: null, heartbeatMs: 1_000, peerTimeoutMs: 10_000, leaseMs: 60_000, maxPayloadBytes: 1 << 20, serverTime: Date.now(),
        };
        ws.send(encodeMessage(welcome));
        ws.send(encodeMessage({ kind: Kind.PolicyVersion, version: 1 })); // consumed by the client: not counted
        ws.send(encodeMessage({ kind: Kind.Heartbeat, time: Date.now(), leaseIds: [] })); // consumed too
        ws.send(encodeMessage({ kind: Kind.LeaseRevoked, leaseId: 'l1', reason: 'expired' })); // a handler takes it
        for (let i = 0; i < 3; i++) ws.send(encodeMessage({ kind: Kind.GroupExhausted, groupId: `g${i}`, promptIndex: i, failures: 3, redispatches: 0, code: WireError.TooManyAttempts, message: 'x' }));
      });
    });
    const logged: { level: string; event: string; fields?: Record<string, unknown> }[] = [];
    const worker = client({
      url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
      role: 'worker',
      log: (level, event, fields) => logged.push({ level, event, fields }),
    });
    const revoked: string[] = [];
    worker.on(Kind.LeaseRevoked, (m) => revoked.push(m.leaseId));
    await worker.start();
    await until(() => (worker.unhandledMessages().GroupExhausted ?? 0) === 3, 5_000, 'three unhandled messages');
    expect(worker.unhandledMessages()).toEqual({ GroupExhausted: 3 });
    expect(revoked).toEqual(['l1']);
    const lines = logged.filter((l) => l.event === 'client_unhandled_message');
    expect(lines.map((l) => [l.level, l.fields?.count])).toEqual([['warn', 1], ['debug', 2], ['debug', 3]]); // one warning per kind
    expect(lines[0]!.fields).toMatchObject({ kind: 'GroupExhausted', role: 'worker' });
  });
});
