import { afterEach, describe, expect, it } from 'vitest';
import { resolveTokens } from '../../src/coordinator/auth.js';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { roleToken } from '../../src/shared/credentials.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import { RawPeer, sleep, startTestCoordinator } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

const KEY = 'k'.repeat(32);
const OTHER_KEY = 'o'.repeat(32);

/** Connects with `token` and says Hello as `role`; resolves with what came back and the close code (or 0 while open). */
async function hello(url: string, role: 'worker' | 'learner', token: string | null, runKey?: string) {
  const peer = await RawPeer.connect(url, token);
  peer.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role, name: 'x', capacity: role === 'worker' ? 1 : 0, policyVersion: null, ...(runKey ? { runKey } : {}) });
  const first = await Promise.race([peer.next(Kind.Welcome).then(() => 'welcome' as const), peer.next(Kind.Error).then((e) => e.code)]);
  const close = first === 'welcome' ? 0 : (await peer.closed).code;
  return { peer, first, close };
}

describe('credentials by role', () => {
  it('resolves each role its own variable first, then the shared token', () => {
    expect(resolveTokens(undefined, '127.0.0.1', { GRPO_TOKEN: 's' })).toEqual({ worker: 's', learner: 's' });
    expect(resolveTokens('flag', '127.0.0.1', { GRPO_WORKER_TOKEN: 'w' })).toEqual({ worker: 'w', learner: 'flag' });
    expect(resolveTokens(undefined, '0.0.0.0', { GRPO_WORKER_TOKEN: 'w', GRPO_LEARNER_TOKEN: 'l' })).toEqual({ worker: 'w', learner: 'l' });
    expect(() => resolveTokens(undefined, '0.0.0.0', { GRPO_WORKER_TOKEN: 'w' })).toThrowError(/without a learner token/);
    expect(roleToken('worker', { GRPO_TOKEN: 's', GRPO_WORKER_TOKEN: 'w' })).toBe('w');
    expect(roleToken('learner', { GRPO_TOKEN: 's', GRPO_WORKER_TOKEN: 'w' })).toBe('s');
    expect(roleToken('learner', {})).toBeNull();
  });

  it('a worker credential cannot open a learner session (4006), the learner credential can, a wrong one gets 401', async () => {
    coord = await startTestCoordinator({ workerToken: 'wtok', learnerToken: 'ltok' });
    const fake = await hello(coord.url, 'learner', 'wtok', KEY);
    expect(fake.first).toBe(WireError.RoleForbidden);
    expect(fake.close).toBe(CloseCode.RoleForbidden);
    expect(coord.stats().learner).toBeNull();
    expect((await hello(coord.url, 'worker', 'wtok')).first).toBe('welcome');
    expect((await hello(coord.url, 'learner', 'ltok', KEY)).first).toBe('welcome');
    await expect(RawPeer.connect(coord.url, 'nope')).rejects.toThrow(/401/);
  });

  it('one shared token still opens both roles (single machine)', async () => {
    coord = await startTestCoordinator({ token: 'shared' });
    expect((await hello(coord.url, 'worker', 'shared')).first).toBe('welcome');
    expect((await hello(coord.url, 'learner', 'shared', KEY)).first).toBe('welcome');
  });
});

describe('the learner slot belongs to the run', () => {
  it('after the learner is lost, a shared-token client without the run key is refused and the resumed learner gets in', async () => {
    coord = await startTestCoordinator({ token: 'shared' });
    const real = await hello(coord.url, 'learner', 'shared', KEY);
    expect(real.first).toBe('welcome');
    real.peer.ws.terminate(); // killed: no close handshake (1006)
    await real.peer.closed;
    await sleep(50);
    const fake = await hello(coord.url, 'learner', 'shared');
    expect([fake.first, fake.close]).toEqual([WireError.LearnerTaken, CloseCode.LearnerTaken]);
    const wrongKey = await hello(coord.url, 'learner', 'shared', OTHER_KEY);
    expect(wrongKey.first).toBe(WireError.LearnerTaken);
    expect((await hello(coord.url, 'learner', 'shared', KEY)).first).toBe('welcome');
  });

  it('the run key takes the slot from a silent session (4007) but never from a live one', async () => {
    coord = await startTestCoordinator({ token: 'shared', heartbeatMs: 50, peerTimeoutMs: 60_000, sweepMs: 20 });
    const live = await RawPeer.join(coord.url, 'learner', { token: 'shared', runKey: KEY });
    const early = await hello(coord.url, 'learner', 'shared', KEY);
    expect(early.first).toBe(WireError.LearnerTaken); // pongs keep `live` fresh
    await live.peer.close();

    const silent = await RawPeer.join(coord.url, 'learner', { token: 'shared', runKey: KEY, autoPong: false });
    await sleep(300); // > 3 heartbeats without a pong
    expect((await hello(coord.url, 'learner', 'shared', OTHER_KEY)).first).toBe(WireError.LearnerTaken);
    const resumed = await hello(coord.url, 'learner', 'shared', KEY);
    expect(resumed.first).toBe('welcome');
    expect((await silent.peer.closed).code).toBe(CloseCode.LearnerReplaced);
    expect(coord.stats().learner?.sessionId).toBe('l3');
  });

  it('a learner that leaves normally (1000: its run ended) frees the slot for the next run', async () => {
    coord = await startTestCoordinator({ token: 'shared' });
    const first = await hello(coord.url, 'learner', 'shared', KEY);
    await first.peer.close();
    await sleep(50);
    expect((await hello(coord.url, 'learner', 'shared', OTHER_KEY)).first).toBe('welcome');
  });

  it('the learner credential (distinct from the workers\') may start a new run on a bound slot', async () => {
    coord = await startTestCoordinator({ workerToken: 'wtok', learnerToken: 'ltok' });
    const first = await hello(coord.url, 'learner', 'ltok', KEY);
    first.peer.ws.terminate();
    await first.peer.closed;
    await sleep(50);
    expect((await hello(coord.url, 'learner', 'wtok', OTHER_KEY)).first).toBe(WireError.RoleForbidden);
    expect((await hello(coord.url, 'learner', 'ltok', OTHER_KEY)).first).toBe('welcome');
  });
});
