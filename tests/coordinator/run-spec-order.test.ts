/**
 * docs/protocol.md section 4, "Ordering guarantee": a worker never receives weights before a
 * RunSpec, even when it joined before any learner and the learner uploaded its weights before
 * sending its RunSpec (what the reference learner's client does after a reconnect).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind } from '../../src/shared/protocol.js';
import { encodeWeights, weightsMessages } from '../../src/shared/weights-wire.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import { RawPeer, sleep, startTestCoordinator, until } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

const weights: NamedHostTensors = new Map([['model.norm.weight', { shape: [16], data: new Float32Array(16).fill(1) }]]);
const WEIGHT_KINDS: number[] = [Kind.WeightsBegin, Kind.WeightsChunk, Kind.WeightsEnd];

describe('RunSpec before weights', () => {
  it('holds the weights from a worker that joined first until the learner RunSpec arrives, then sends RunSpec and weights in that order', async () => {
    coord = await startTestCoordinator();
    const { peer: early } = await RawPeer.join(coord.url, 'worker');
    const { peer: learner } = await RawPeer.join(coord.url, 'learner', { runSpec: false });
    for (const m of weightsMessages(encodeWeights(weights, 1, 'f32', 32))) learner.send(m);
    await until(() => coord?.stats().weights.version === 1, 5_000, 'weights at the coordinator');
    await sleep(100);
    expect(early.received.filter((m) => WEIGHT_KINDS.includes(m.kind))).toEqual([]);
    expect((await early.next(Kind.PolicyVersion)).version).toBe(1); // the version is announced, the bytes wait

    learner.send(SAMPLES[Kind.RunSpec]);
    await early.next(Kind.WeightsEnd);
    const order = early.received.map((m) => m.kind).filter((k) => k === Kind.RunSpec || WEIGHT_KINDS.includes(k));
    expect(order[0]).toBe(Kind.RunSpec);
    expect(order[1]).toBe(Kind.WeightsBegin);
    expect(order.at(-1)).toBe(Kind.WeightsEnd);

    // a worker joining now gets Welcome, RunSpec, then the weights
    const { peer: late } = await RawPeer.join(coord.url, 'worker');
    await late.next(Kind.WeightsEnd);
    expect(late.received.slice(0, 3).map((m) => m.kind)).toEqual([Kind.Welcome, Kind.RunSpec, Kind.WeightsBegin]);
    // a second RunSpec (another run) does not resend weights the workers already have
    learner.send({ ...SAMPLES[Kind.RunSpec], spec: { ...SAMPLES[Kind.RunSpec].spec, runId: 'run-2' } });
    await early.next(Kind.RunSpec, (m) => m.spec.runId === 'run-2');
    await sleep(100);
    expect(early.all(Kind.WeightsBegin)).toHaveLength(1);
    for (const p of [early, late, learner]) await p.close();
  });
});
