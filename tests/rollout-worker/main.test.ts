/**
 * The rollout worker end to end on loopback: a real coordinator on port 0, a learner played by a
 * ProtocolClient (RunSpec, weights, Enqueue, Verdicts), and workers in-process on the tf cpu
 * backend with a tiny random Llama and real reward pools (piscina threads run the compiled
 * dist/ files: build first, `npx tsc -p .`).
 */
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { LlamaModel } from '../../src/model/llama.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { GroupExhaustedMsg, GroupResultMsg, GroupSpec, ProtocolLogger, RunSpec } from '../../src/shared/protocol.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import { runWorker, startWorker } from '../../src/rollout-worker/main.js';
import type { WorkerHandle } from '../../src/rollout-worker/main.js';
import { startTestCoordinator, until } from '../coordinator/helpers.js';
import { tinyLlamaConfig } from '../helpers.js';

const task = createTask('arithmetic', { seed: 7 });
const tok = tokenizerForTask(task);
const GROUP = 3;
const CHAOS = 'tests/fixtures/rewards/chaos-task.js'; // rewards by completion length; throws when meta.fail

interface LogLine {
  level: string;
  event: string;
  fields: Record<string, unknown>;
}

let coord: CoordinatorHandle;
let learner: ProtocolClient;
let config: LlamaConfig;
const weights: NamedHostTensors[] = []; // version v = weights[v]
const results = new Map<string, GroupResultMsg>();
const arrival: GroupResultMsg[] = [];
const exhausted = new Map<string, GroupExhaustedMsg>();
const workers: WorkerHandle[] = [];
let nextId = 0;

function recorder(): { log: ProtocolLogger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: (level, event, fields = {}) => lines.push({ level, event, fields }) };
}

function runSpec(runId: string, taskName: string, retries = 2): RunSpec {
  return {
    runId,
    model: config as unknown as Record<string, unknown>,
    tokenizer: tok.toJSON(),
    specialTokens: { bosId: tok.bosId, eosId: tok.eosId, padId: tok.padId },
    task: { name: taskName, seed: 7, options: {}, jsOnly: false },
    rewardWeights: {},
    sampling: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 6, seed: 11 },
    rewards: { timeoutMs: 5_000, retries, functions: [] },
  };
}

/** Enqueues `n` arithmetic prompts; returns their group ids. */
function enqueue(n: number, meta?: unknown): GroupSpec[] {
  const groups = Array.from({ length: n }, (): GroupSpec => {
    const i = nextId++;
    const ex = task.example('train', i);
    return { groupId: `g${i}`, promptIndex: i, prompt: ex.prompt, meta: meta ?? ex.meta, groupSize: GROUP };
  });
  learner.send({ kind: Kind.Enqueue, groups });
  return groups;
}

async function resultsOf(groups: GroupSpec[]): Promise<GroupResultMsg[]> {
  await until(() => groups.every((g) => results.has(g.groupId)), 15_000, `results of ${groups.map((g) => g.groupId).join(',')}`);
  return groups.map((g) => results.get(g.groupId) as GroupResultMsg);
}

async function worker(name: string, capacity = 2): Promise<{ w: WorkerHandle; lines: LogLine[] }> {
  const { log, lines } = recorder();
  const w = await startWorker({ coordinator: coord.url, token: null, name, capacity, rewardThreads: 1, backend: 'cpu', log, allowedModules: [dirname(CHAOS)] });
  workers.push(w);
  return { w, lines };
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  config = tinyLlamaConfig(tok, { max_position_embeddings: 64, initializer_range: 0.2 });
  for (const seed of [5, 6, 7]) {
    const m = LlamaModel.create(config, seed);
    weights.push(await m.toHostTensors());
    m.dispose();
  }
  coord = await startTestCoordinator({ maxGroupAttempts: 2 });
  learner = new ProtocolClient({ url: coord.url, role: 'learner', name: 'learner', token: null });
  learner.on(Kind.GroupResult, (m) => {
    if (!results.has(m.group.groupId)) arrival.push(m);
    results.set(m.group.groupId, m);
    learner.send({ kind: Kind.Verdict, groupId: m.group.groupId, admitted: true, reason: 'ok' });
  });
  learner.on(Kind.GroupExhausted, (m) => {
    exhausted.set(m.groupId, m);
    learner.send({ kind: Kind.Verdict, groupId: m.groupId, admitted: false, reason: 'failed' });
  });
  await learner.start();
  learner.send({ kind: Kind.RunSpec, spec: runSpec('run-1', 'arithmetic') });
  await learner.publishWeights(weights[0], 0, 'f32');
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await learner?.close();
  await coord?.close();
});

describe('rollout worker', () => {
  let a: { w: WorkerHandle; lines: LogLine[] };
  let tensorsAfterWarmup = 0;

  it('builds its model from RunSpec and weights, sends Ready, and returns complete groups for its leases', async () => {
    a = await worker('wA');
    await until(() => a.w.stats().policyVersion === 0, 10_000, 'weights v0 loaded');
    await until(() => coord.stats().workers.some((x) => x.name === 'wA' && x.ready && x.policyVersion === 0), 5_000, 'Ready v0');

    const groups = enqueue(4);
    const got = await resultsOf(groups);
    got.forEach((r, g) => {
      expect(r.workerName).toBe('wA');
      expect(r.group.policyVersion).toBe(0);
      expect(r.group.promptTokens).toEqual(promptIds(tok, groups[g].prompt));
      expect(r.group.completions).toHaveLength(GROUP);
      for (const c of r.group.completions) {
        expect(c.logprobs).toHaveLength(c.tokens.length);
        expect(c.tokens.length).toBeGreaterThan(0);
        expect(c.tokens.length).toBeLessThanOrEqual(6);
        expect(c.text).toBe(decodeCompletion(tok, c.tokens));
        expect(Object.keys(c.rewards).length).toBeGreaterThan(0);
        for (const v of Object.values(c.rewards)) expect(v === null || Number.isFinite(v)).toBe(true);
      }
    });
    const s = a.w.stats();
    expect(s).toMatchObject({ connected: true, runId: 'run-1', groupsDone: 4, groupsFailed: 0, groupsDropped: 0, completions: 4 * GROUP });
    expect(s.batches).toBeGreaterThanOrEqual(2); // capacity 2: four groups need two calls at least
    expect(s.tokensGenerated).toBe(got.reduce((n, r) => n + r.group.completions.reduce((k, c) => k + c.tokens.length, 0), 0));
    expect(a.lines.find((l) => l.event === 'run_spec')?.fields).toMatchObject({ run: 'run-1', task: 'arithmetic' });
    expect(a.lines.find((l) => l.event === 'weights_loaded')?.fields).toMatchObject({ version: 0, seconds: expect.any(Number) });
    expect(a.lines.find((l) => l.event === 'batch')?.fields).toMatchObject({ groups: expect.any(Number), tokens: expect.any(Number), sample_s: expect.any(Number), reward_s: expect.any(Number) });
    tensorsAfterWarmup = tf.memory().numTensors;
  });

  it('loads newer weights between batches; later groups carry the new version; no tensors leak', async () => {
    const groups = enqueue(6);
    await learner.publishWeights(weights[1], 1, 'f32');
    const got = await resultsOf(groups);
    const versions = arrival.filter((r) => groups.some((g) => g.groupId === r.group.groupId)).map((r) => r.group.policyVersion);
    expect(versions.every((v) => v === 0 || v === 1)).toBe(true);
    expect(versions).toEqual([...versions].sort((x, y) => x - y)); // never back to the old weights
    expect(got).toHaveLength(6);

    await until(() => a.w.stats().policyVersion === 1, 10_000, 'weights v1 loaded');
    const later = await resultsOf(enqueue(2));
    expect(later.map((r) => r.group.policyVersion)).toEqual([1, 1]);
    expect(coord.stats().workers.find((x) => x.name === 'wA')?.policyVersion).toBe(1); // Ready v1
    expect(tf.memory().numTensors).toBe(tensorsAfterWarmup); // weights overwritten in place
  });

  it('a worker that joins late gets the RunSpec and current weights at once and shares the leases', async () => {
    const b = await worker('wB');
    await until(() => b.w.stats().policyVersion === 1 && b.w.stats().runId === 'run-1', 10_000, 'late worker loaded v1');
    const got = await resultsOf(enqueue(4)); // two idle workers of capacity 2: two groups each
    expect(new Set(got.map((r) => r.workerName))).toEqual(new Set(['wA', 'wB']));
    expect(got.every((r) => r.group.policyVersion === 1)).toBe(true);
    await b.w.stop();
    await expect(b.w.done).resolves.toBeUndefined();
    expect(b.w.stats().connected).toBe(false);
    expect(b.lines.at(-1)?.event).toBe('stopped');
  });

  it('a new run replaces the task and pool; a group whose reward fails is reported as GroupFailed', async () => {
    learner.send({ kind: Kind.RunSpec, spec: runSpec('run-2', CHAOS, 0) });
    await until(() => a.w.stats().runId === 'run-2', 10_000, 'run-2 applied');
    expect(a.w.stats().policyVersion).toBeNull(); // a new run drops the model until its weights come
    await learner.publishWeights(weights[2], 2, 'f32');
    await until(() => a.w.stats().policyVersion === 2, 10_000, 'weights v2 loaded');

    const failedBefore = a.w.stats().groupsFailed;
    const [bad] = enqueue(1, { fail: true });
    const good = enqueue(1);
    const [ok] = await resultsOf(good);
    for (const c of ok.group.completions) expect(c.rewards).toEqual({ chaos: c.text.length }); // chaos scores length
    expect(ok.group.policyVersion).toBe(2);

    await until(() => exhausted.has(bad.groupId), 15_000, 'bad group exhausted');
    const ex = exhausted.get(bad.groupId) as GroupExhaustedMsg;
    expect(ex.code).toBe(WireError.TooManyAttempts);
    expect(ex.message).toContain('GRPO_ERR_REWARD_FAILED');
    expect(results.has(bad.groupId)).toBe(false);
    expect(a.w.stats().groupsFailed - failedBefore).toBe(2); // maxGroupAttempts 2, both on this worker
    const failure = a.lines.find((l) => l.event === 'group_failed');
    expect(failure?.fields).toMatchObject({ group: bad.groupId, code: 'GRPO_ERR_REWARD_FAILED' });
  });

  it('runWorker resolves when its signal aborts; a refused token is fatal and coded', async () => {
    const ac = new AbortController();
    const { log, lines } = recorder();
    const running = runWorker({ coordinator: coord.url, token: null, name: 'wC', capacity: 1, rewardThreads: 1, backend: 'cpu', log, signal: ac.signal, allowedModules: [dirname(CHAOS)] }); // the run is CHAOS's by now
    await until(() => lines.some((l) => l.event === 'run_spec'), 10_000, 'wC got the RunSpec');
    ac.abort();
    await expect(running).resolves.toBeUndefined();
    expect(lines.at(-1)?.event).toBe('stopped');

    const guarded = await startTestCoordinator({ token: 's3cret' });
    try {
      const w = await startWorker({ coordinator: guarded.url, token: 'wrong', capacity: 1, rewardThreads: 1, backend: 'cpu', log: () => {} });
      const err = await w.done.then(() => null, (e: unknown) => e);
      expect(isGrpoError(err, WireError.Auth)).toBe(true);
    } finally {
      await guarded.close();
    }
  });

  it('rejects bad options before connecting', async () => {
    const base = { coordinator: coord.url, token: null, capacity: 1, rewardThreads: 1, backend: 'cpu' as const };
    await expect(startWorker({ ...base, coordinator: 'http://x' })).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    await expect(startWorker({ ...base, capacity: 0 })).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    await expect(startWorker({ ...base, rewardThreads: 1.5 })).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
  });
});
