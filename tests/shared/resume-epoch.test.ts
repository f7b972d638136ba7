/**
 * Resume epochs (docs/protocol.md, "Resume epochs"), over real loopback sockets: a worker never
 * loads weights whose (epoch, version) is not above what it holds, whatever a coordinator sends;
 * the coordinator gives each learner process a new epoch above every one seen, refuses a stale
 * learner session, and makes a learner whose epoch is behind a worker's reconnect for a new one.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import type { GrpoError } from '../../src/shared/errors.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import type { HelloMsg, Message } from '../../src/shared/protocol.js';
import { encodeWeights, weightsMessages } from '../../src/shared/weights-wire.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import type { ProtocolClientOptions, ReceivedWeights } from '../../src/shared/ws-client.js';
import { RawPeer, startTestCoordinator, until } from '../coordinator/helpers.js';
import { SAMPLES } from './protocol-samples.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function coordinator(): Promise<CoordinatorHandle> {
  const c = await startTestCoordinator();
  cleanup.push(() => c.close());
  return c;
}

function client(opts: Partial<ProtocolClientOptions> & Pick<ProtocolClientOptions, 'url' | 'role'>): ProtocolClient {
  const c = new ProtocolClient({ name: opts.role, token: null, reconnectInitialMs: 20, reconnectMaxMs: 100, ...opts });
  cleanup.push(() => c.close());
  if (opts.role === 'learner') c.onEvent('welcome', () => c.send(SAMPLES[Kind.RunSpec]));
  return c;
}

function weights(version: number, n = 64): NamedHostTensors {
  return new Map([['model.norm.weight', { shape: [n], data: new Float32Array(n).fill(version) }]]);
}

function worker(url: string): { c: ProtocolClient; loaded: ReceivedWeights[]; errors: GrpoError[] } {
  const c = client({ url, role: 'worker' });
  const loaded: ReceivedWeights[] = [];
  const errors: GrpoError[] = [];
  c.onEvent('weights', (w) => {
    loaded.push(w);
    c.send({ kind: Kind.Ready, policyVersion: w.version });
  });
  c.onEvent('error', (e) => errors.push(e));
  return { c, loaded, errors };
}

/** A coordinator stand-in that welcomes, then sends the weights `script` lists, in order. */
async function fakeCoordinator(script: { version: number; epoch: number }[]): Promise<{ url: string; got: Message[]; hellos: HelloMsg[] }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  cleanup.push(() => new Promise((r) => wss.close(r)));
  await new Promise((r) => wss.once('listening', r));
  const got: Message[] = [];
  const hellos: HelloMsg[] = [];
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data: Buffer) => {
      const msg = decodeMessage(new Uint8Array(data));
      got.push(msg);
      if (msg.kind !== Kind.Hello) return;
      hellos.push(msg);
      const welcome: Message = {
        kind: Kind.Welcome, protocolVersion: PROTOCOL_VERSION, sessionId: `w${hellos.length}`, role: 'worker', policyVersion: null,
        weightsVersion: null, heartbeatMs: 1_000, peerTimeoutMs: 10_000, leaseMs: 60_000, maxPayloadBytes: 1 << 20, serverTime: Date.now(),
      };
      ws.send(encodeMessage(welcome));
      if (hellos.length > 1) return; // the script plays once
      for (const s of script) {
        for (const m of weightsMessages(encodeWeights(weights(s.version), s.version, 'f32', 64))) {
          ws.send(encodeMessage(m.kind === Kind.WeightsBegin && s.epoch > 0 ? { ...m, epoch: s.epoch } : m));
        }
      }
    });
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, got, hellos };
}

describe('a worker never goes backwards', () => {
  it('refuses a replayed or lower (epoch, version) with WEIGHTS_BACKWARDS and keeps its weights', async () => {
    // v5, then a replay of v5 (ignored), v3 of the same epoch (refused), v4 of epoch 1 (loaded: a
    // resumed learner), then v9 of epoch 0 (refused: a stale learner's upload)
    const fake = await fakeCoordinator([
      { version: 5, epoch: 0 },
      { version: 5, epoch: 0 },
      { version: 3, epoch: 0 },
      { version: 4, epoch: 1 },
      { version: 9, epoch: 0 },
    ]);
    const w = worker(fake.url);
    await w.c.start();
    await until(() => w.errors.length === 2, 5_000, 'two refusals');
    expect(w.loaded.map((x) => [x.epoch, x.version])).toEqual([[0, 5], [1, 4]]);
    expect(w.errors.map((e) => e.code)).toEqual([WireError.WeightsBackwards, WireError.WeightsBackwards]);
    expect(w.errors[0].message).toMatch(/weights v3 are older than the v5 this worker holds/);
    expect(w.errors[1].message).toMatch(/weights v9 are older than the e1\/v4 this worker holds/);
    // the coordinator is told, with the refused version as ref
    await until(() => fake.got.filter((m) => m.kind === Kind.Error).length === 2, 5_000, 'errors sent');
    const sent = fake.got.filter((m) => m.kind === Kind.Error);
    expect(sent.map((m) => m.kind === Kind.Error && [m.code, m.ref])).toEqual([[WireError.WeightsBackwards, 'v3'], [WireError.WeightsBackwards, 'v9']]);
    expect(w.c.weightsVersion).toBe(4);
    expect(w.c.weightsEpoch).toBe(1);
  });

  it('says in Hello which (epoch, version) it holds after a reconnect', async () => {
    const fake = await fakeCoordinator([{ version: 2, epoch: 3 }]);
    const w = worker(fake.url);
    await w.c.start();
    await until(() => w.loaded.length === 1, 5_000, 'weights');
    const ws = (w.c as unknown as { ws: WebSocket }).ws;
    ws.close(4000, 'test');
    await until(() => fake.hellos.length === 2, 5_000, 'reconnect');
    expect(fake.hellos[0]).not.toHaveProperty('epoch');
    expect(fake.hellos[1]).toMatchObject({ policyVersion: 2, epoch: 3 });
  });
});

describe('epochs at the coordinator', () => {
  it('gives a restarted learner a new epoch above every one seen, and workers load its lower version', async () => {
    const coord = await coordinator();
    const first = client({ url: coord.url, role: 'learner' });
    expect((await first.start()).epoch).toBeUndefined(); // epoch 0
    await first.publishWeights(weights(5), 5, 'f32', 64);
    const w = worker(coord.url);
    await w.c.start();
    await until(() => w.loaded.length === 1, 5_000, 'v5');
    await first.close();

    // the learner resumed from an older checkpoint (v3) that recorded epoch 0
    const resumed = client({ url: coord.url, role: 'learner', epoch: 0 });
    expect((await resumed.start()).epoch).toBe(1);
    expect(resumed.epoch).toBe(1);
    await resumed.publishWeights(weights(3), 3, 'f32', 64);
    await until(() => w.loaded.length === 2, 5_000, 'e1/v3');
    expect(w.loaded.map((x) => [x.epoch, x.version])).toEqual([[0, 5], [1, 3]]);
    expect(w.errors).toEqual([]);
    expect(coord.stats()).toMatchObject({ epoch: 1, policyVersion: 3 });
  });

  it('refuses a stale learner session of an older epoch (4007), and the reconnect of the current one is kept', async () => {
    const coord = await coordinator();
    const { welcome } = await RawPeer.join(coord.url, 'learner', { epoch: 6, newEpoch: true });
    expect(welcome.epoch).toBe(7);
    const current = welcome.sessionId;
    const stale = await RawPeer.connect(coord.url, null);
    stale.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'learner', name: 'old', capacity: 0, policyVersion: 9, epoch: 6 });
    const err = await stale.next(Kind.Error);
    expect(err).toMatchObject({ code: WireError.LearnerReplaced });
    expect(err.message).toMatch(/newer learner process of this run started \(epoch 7\); this session runs in epoch 6/);
    expect(await stale.closed).toMatchObject({ code: CloseCode.LearnerReplaced });
    expect(coord.stats().learner?.sessionId).toBe(current);
  });

  it('makes a learner whose epoch is below a worker\'s reconnect for a new one (4008), then re-sends its weights', async () => {
    const coord = await coordinator();
    const learner = client({ url: coord.url, role: 'learner' });
    await learner.start();
    expect(learner.epoch).toBe(0);
    await learner.publishWeights(weights(2), 2, 'f32', 64);
    // a worker still holding e4/v8 from before a coordinator restart joins
    const old = await RawPeer.connect(coord.url, null);
    old.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'worker', name: 'old', capacity: 1, policyVersion: 8, epoch: 4 });
    await until(() => learner.epoch === 5, 5_000, 'new epoch');
    // the store's e0/v2 is below what the worker holds: never sent; e5/v2 is
    const begin = await old.next(Kind.WeightsBegin, (m) => m.version === 2);
    expect(begin.epoch).toBe(5);
    expect(old.received.filter((m) => m.kind === Kind.WeightsBegin)).toHaveLength(1);
    expect(coord.stats().epoch).toBe(5);
  });
});
