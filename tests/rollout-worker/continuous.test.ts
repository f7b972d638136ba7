/**
 * The worker's continuous batching on the real RunState (tiny model, real reward pool; build
 * first, `npx tsc -p .`): every leased group is reported exactly once, with groupSize completions
 * and the version that sampled it, while far more groups than the pool's rows stream through it;
 * results of a revoked lease are dropped; weights arriving mid-stream wait for the drain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadDecodeAddon } from '../../src/model/native-decoder.js';
import { presetConfig } from '../../src/model/presets.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind } from '../../src/shared/protocol.js';
import type { GroupSpec, Message, MessageOf, RunSpec } from '../../src/shared/protocol.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { WorkerLoop } from '../../src/rollout-worker/worker-loop.js';
import { until } from '../coordinator/helpers.js';

const tok = tokenizerForTask(createTask('arithmetic', { seed: 1 }));
const config = presetConfig('tiny', tok, { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, max_position_embeddings: 64 });
const sent: Message[] = [];
const logs: { event: string; fields: Record<string, unknown> }[] = [];
const weights: NamedHostTensors[] = [];
let loop: WorkerLoop;
let running: Promise<void>;
let leaseSeq = 0;
let onSend: (m: Message) => void = () => {};

const spec: RunSpec = {
  runId: 'r1',
  model: config as unknown as Record<string, unknown>,
  tokenizer: tok.toJSON(),
  task: { name: 'arithmetic', seed: 1, options: {} },
  rewardWeights: {},
  sampling: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 6, seed: 3 },
  rewards: { timeoutMs: 5_000, retries: 0 },
};

function lease(prefix: string, n: number, groupSize = 3): { leaseId: string; ids: string[] } {
  const leaseId = `L${++leaseSeq}`;
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  const groups = ids.map((groupId, i): GroupSpec => ({ groupId, promptIndex: i, prompt: `${i % 9}+${(i * 7) % 9}=`, meta: { answer: String((i % 9) + ((i * 7) % 9)) }, groupSize }));
  loop.onLease({ kind: Kind.Lease, leaseId, policyVersion: null, deadline: 0, ttlMs: 60_000, groups });
  return { leaseId, ids };
}

function sentOf<K extends Kind>(kind: K, from = 0): MessageOf<K>[] {
  return sent.slice(from).filter((m) => m.kind === kind) as MessageOf<K>[];
}

const reported = (from: number): string[] => sentOf(Kind.Groups, from).flatMap((g) => g.results.map((r) => r.groupId));

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  for (const seed of [1, 2]) {
    const m = LlamaModel.create(config, seed);
    weights.push(await m.toHostTensors());
    m.dispose();
  }
  // capacity 2 groups: a pool of 6 rows for groups of 3
  loop = new WorkerLoop({ name: 't', capacity: 2, rewardThreads: 1, send: (m) => (onSend(m), sent.push(m) > 0), log: (_l, event, fields) => logs.push({ event, fields: fields ?? {} }) });
  running = loop.runLoop();
  loop.onRunSpec(spec);
  loop.onWeights({ version: 0, encoding: 'f32', tensors: weights[0] });
  await until(() => sentOf(Kind.Ready).length === 1, 10_000, 'Ready v0');
});

afterAll(async () => {
  loop.stop();
  await running;
  await loop.run.close();
});

describe.skipIf(loadDecodeAddon().addon === null)('WorkerLoop continuous batching', () => {
  it('reports every group of several leases exactly once, each as soon as it is scored', async () => {
    const from = sent.length;
    const a = lease('a', 7);
    const b = lease('b', 5);
    await until(() => reported(from).length + sentOf(Kind.GroupFailed, from).length >= 12, 20_000, '12 groups');
    await new Promise((r) => setTimeout(r, 50));
    const ids = reported(from);
    expect([...ids].sort()).toEqual([...a.ids, ...b.ids].sort());
    expect(sentOf(Kind.GroupFailed, from)).toEqual([]);
    for (const g of sentOf(Kind.Groups, from)) {
      expect(g.results).toHaveLength(1); // one group per message: nothing waits for a batch
      const r = g.results[0];
      expect(g.leaseId).toBe(r.groupId.startsWith('a') ? a.leaseId : b.leaseId);
      expect(r.policyVersion).toBe(0);
      expect(r.completions).toHaveLength(3);
      for (const c of r.completions) {
        expect(c.tokens.length).toBeGreaterThan(0);
        expect(c.tokens.length).toBeLessThanOrEqual(6);
        expect(c.logprobs).toHaveLength(c.tokens.length);
      }
    }
    expect(logs.some((l) => l.event === 'batch' && l.fields.mode === 'continuous' && l.fields.rows === 6)).toBe(true);
  });

  it('drops the results of a lease revoked mid-stream and samples later leases with new weights', async () => {
    const from = sent.length;
    const dropped = loop.counters.groupsDropped;
    let c = { leaseId: '', ids: [] as string[] };
    // revoke the lease the moment its first group goes out: the rest are in the pool or queued
    onSend = (m) => {
      if (m.kind === Kind.Groups && m.leaseId === c.leaseId) {
        onSend = () => {};
        loop.onLeaseRevoked(c.leaseId);
        loop.onWeights({ version: 1, encoding: 'f32', tensors: weights[1] });
      }
    };
    c = lease('c', 30);
    await until(() => sentOf(Kind.Ready, from).length === 1, 20_000, 'Ready v1');
    expect(reported(from).filter((id) => id.startsWith('c'))).toHaveLength(1);
    expect(loop.counters.groupsDropped).toBeGreaterThan(dropped); // in the pool when revoked
    const d = lease('d', 4);
    await until(() => reported(from).filter((id) => id.startsWith('d')).length === 4, 20_000, 'd groups');
    for (const g of sentOf(Kind.Groups, from)) {
      if (g.leaseId === d.leaseId) expect(g.results[0].policyVersion).toBe(1);
    }
  });
});
