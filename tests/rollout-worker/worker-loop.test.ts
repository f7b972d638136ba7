/**
 * WorkerLoop with a recorded `send` and a controllable rollout step (the real RunState builds the
 * tiny model and a real reward pool; build first, `npx tsc -p .`): what is reported per lease,
 * when weights change, what happens to results of leases that died mid-call, and how a call that
 * throws or runs long is handled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { GrpoError } from '../../src/shared/errors.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind } from '../../src/shared/protocol.js';
import type { GroupSpec, Message, MessageOf, RunSpec } from '../../src/shared/protocol.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import type { RolloutBatch, RolloutContext } from '../../src/rollout-worker/rollout.js';
import { WorkerLoop } from '../../src/rollout-worker/worker-loop.js';
import { until } from '../coordinator/helpers.js';

const tok = tokenizerForTask(createTask('arithmetic', { seed: 1 }));
const config = presetConfig('tiny', tok, { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, max_position_embeddings: 32 });
const sent: Message[] = [];
const calls: { version: number; groups: string[] }[] = [];
const weights: NamedHostTensors[] = [];
let hold = false;
let release: (() => void) | null = null;
let sampleSeconds = 0.01;
let loop: WorkerLoop;
let running: Promise<void>;
let leaseSeq = 0;

function spec(runId: string, taskName = 'arithmetic'): RunSpec {
  return {
    runId,
    model: config as unknown as Record<string, unknown>,
    tokenizer: tok.toJSON(),
    specialTokens: { bosId: tok.bosId, eosId: tok.eosId, padId: tok.padId },
    task: { name: taskName, seed: 1, options: {}, jsOnly: false },
    rewardWeights: {},
    sampling: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 4, seed: 3 },
    rewards: { timeoutMs: 1_000, retries: 0, functions: [] },
  };
}

/** Stands in for rolloutGroups: records the call; `boom` makes it throw; `fail-*` groups fail their reward. */
async function fakeRollout(ctx: RolloutContext, specs: readonly GroupSpec[]): Promise<RolloutBatch> {
  calls.push({ version: ctx.policyVersion, groups: specs.map((s) => s.groupId) });
  if (hold) await new Promise<void>((r) => (release = r));
  if (specs.some((s) => s.groupId === 'boom')) throw new GrpoError('GRPO_ERR_PROMPT_TOO_LONG', 'boom does not fit');
  const outcomes = specs.map((s) =>
    s.groupId.startsWith('fail')
      ? { groupId: s.groupId, code: 'GRPO_ERR_REWARD_FAILED', message: 'reward threw' }
      : { groupId: s.groupId, policyVersion: ctx.policyVersion, promptTokens: [1], completions: [] },
  );
  return { outcomes, timing: { sampleSeconds, rewardSeconds: 0.001, tokensGenerated: specs.length, completions: specs.length } };
}

function lease(...ids: string[]): string {
  const leaseId = `L${++leaseSeq}`;
  const groups = ids.map((groupId, i): GroupSpec => ({ groupId, promptIndex: i, prompt: '1+1=', meta: null, groupSize: 2 }));
  loop.onLease({ kind: Kind.Lease, leaseId, policyVersion: null, deadline: 0, ttlMs: 60_000, groups });
  return leaseId;
}

function sentOf<K extends Kind>(kind: K, from = 0): MessageOf<K>[] {
  return sent.slice(from).filter((m) => m.kind === kind) as MessageOf<K>[];
}

/** Runs `act` and waits until the loop has finished (and reported) `k` more batches. */
async function batches(k: number, act: () => void): Promise<void> {
  const target = loop.counters.batches + k;
  act();
  await until(() => loop.counters.batches >= target, 5_000, `${k} batches`);
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  for (const seed of [1, 2]) {
    const m = LlamaModel.create(config, seed);
    weights.push(await m.toHostTensors());
    m.dispose();
  }
  loop = new WorkerLoop({ name: 't', capacity: 4, rewardThreads: 1, send: (m) => sent.push(m) > 0, log: () => {}, rollout: fakeRollout });
  running = loop.runLoop();
  loop.onRunSpec(spec('r1'));
  loop.onWeights({ version: 0, encoding: 'f32', tensors: weights[0] });
  await until(() => sentOf(Kind.Ready).length === 1, 10_000, 'Ready v0');
});

afterAll(async () => {
  loop.stop();
  await running;
  await loop.run.close();
});

describe('WorkerLoop', () => {
  it('samples up to capacity groups across leases in one call and reports each lease once', async () => {
    const from = sent.length;
    let l1 = '';
    let l2 = '';
    await batches(1, () => {
      l1 = lease('a', 'b');
      l2 = lease('c', 'fail-d');
    });
    expect(calls.at(-1)).toEqual({ version: 0, groups: ['a', 'b', 'c', 'fail-d'] });
    const groups = sentOf(Kind.Groups, from);
    expect(groups.map((g) => [g.leaseId, g.results.map((r) => r.groupId)])).toEqual([[l1, ['a', 'b']], [l2, ['c']]]);
    expect(sentOf(Kind.GroupFailed, from)).toEqual([{ kind: Kind.GroupFailed, leaseId: l2, groupId: 'fail-d', code: 'GRPO_ERR_REWARD_FAILED', message: 'reward threw' }]);
    expect(loop.counters).toMatchObject({ leases: 2, groupsDone: 3, groupsFailed: 1, batches: 1 });
  });

  it('loads weights that arrive mid-call only after the call; the next call samples with them', async () => {
    hold = true;
    const from = sent.length;
    const l = lease('e');
    await until(() => calls.at(-1)?.groups[0] === 'e', 5_000, 'call with e');
    loop.onWeights({ version: 1, encoding: 'f32', tensors: weights[1] });
    await new Promise((r) => setTimeout(r, 30));
    expect(loop.run.policyVersion).toBe(0); // not swapped under a running call
    hold = false;
    release?.();
    await until(() => sentOf(Kind.Ready, from).length === 1, 5_000, 'Ready v1');
    const order = sent.slice(from).map((m) => m.kind);
    expect(order).toEqual([Kind.Groups, Kind.Ready]);
    expect(sentOf(Kind.Groups, from)[0]).toMatchObject({ leaseId: l, results: [{ groupId: 'e', policyVersion: 0 }] });
    await batches(1, () => lease('f'));
    expect(calls.at(-1)).toEqual({ version: 1, groups: ['f'] });
  });

  it('drops results of a lease revoked, or lost with the connection, while its groups were sampled', async () => {
    for (const kill of [(id: string) => loop.onLeaseRevoked(id), () => loop.onDisconnect()]) {
      hold = true;
      const from = sent.length;
      const dropped = loop.counters.groupsDropped;
      const id = lease('g', 'h');
      await until(() => calls.at(-1)?.groups.join() === 'g,h', 5_000, 'call with g,h');
      kill(id);
      hold = false;
      release?.();
      await until(() => loop.counters.groupsDropped === dropped + 2, 5_000, 'dropped');
      expect(sent.slice(from)).toEqual([]);
    }
  });

  it('splits a call that throws so only the group that broke it fails', async () => {
    const from = sent.length;
    const n = calls.length;
    let l = '';
    await batches(1, () => (l = lease('i', 'boom', 'j')));
    expect(calls.slice(n).map((c) => c.groups)).toEqual([['i', 'boom', 'j'], ['i'], ['boom'], ['j']]);
    expect(sentOf(Kind.GroupFailed, from)).toMatchObject([{ leaseId: l, groupId: 'boom', code: 'GRPO_ERR_PROMPT_TOO_LONG' }]);
    expect(sentOf(Kind.Groups, from)).toMatchObject([{ leaseId: l, results: [{ groupId: 'i' }, { groupId: 'j' }] }]);
  });

  it('halves the groups per call while calls run past the time budget and grows back when they are quick', async () => {
    loop.sampleBudgetSeconds = 1;
    sampleSeconds = 3; // each call reports 3 s of sampling
    await batches(1, () => lease('k1', 'k2', 'k3', 'k4'));
    expect(loop.groupsPerCall).toBe(2);
    let n = calls.length;
    await batches(3, () => lease('k5', 'k6', 'k7', 'k8'));
    expect(calls.slice(n).map((c) => c.groups.length)).toEqual([2, 1, 1]);
    expect(loop.groupsPerCall).toBe(1);
    sampleSeconds = 0.01;
    n = calls.length;
    await batches(3, () => lease('m1', 'm2', 'm3', 'm4', 'm5'));
    expect(calls.slice(n).map((c) => c.groups.length)).toEqual([1, 2, 2]);
    expect(loop.groupsPerCall).toBe(4);
  });

  it('refuses leased groups with the coded reason while the RunSpec cannot be used, and recovers with a good one', async () => {
    loop.onRunSpec(spec('r2', 'no-such-task'));
    await until(() => loop.run.error !== null, 5_000, 'spec error');
    expect(loop.run.error?.code).toBe('GRPO_ERR_UNKNOWN_TASK');
    const from = sent.length;
    const n = calls.length;
    const l = lease('p');
    await until(() => sentOf(Kind.GroupFailed, from).length === 1, 5_000, 'refused');
    expect(sentOf(Kind.GroupFailed, from)[0]).toMatchObject({ leaseId: l, groupId: 'p', code: 'GRPO_ERR_UNKNOWN_TASK' });
    expect(calls.length).toBe(n);

    loop.onRunSpec(spec('r3'));
    await until(() => loop.run.runId === 'r3' && loop.run.error === null, 10_000, 'good spec');
    loop.onWeights({ version: 4, encoding: 'f32', tensors: weights[0] });
    await until(() => sentOf(Kind.Ready, from).some((m) => m.policyVersion === 4), 10_000, 'Ready v4');
    await batches(1, () => lease('q'));
    expect(calls.at(-1)).toEqual({ version: 4, groups: ['q'] });
  });
});
