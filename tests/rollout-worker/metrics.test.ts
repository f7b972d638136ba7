/**
 * A rollout worker's metrics endpoint on a real loopback port: a coordinator on port 0, a learner
 * played by a ProtocolClient (RunSpec, weights, Enqueue, Verdicts) and an in-process worker with
 * `metricsPort`. GET /metrics carries role `worker` and the worker's name as `instance`, counts
 * what the worker did and times it per group; GET /healthz follows the connection; stop() frees
 * the port. The reward pool runs the compiled dist/ files: build first (`npx tsc -p .`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { startWorker, type WorkerHandle } from '../../src/rollout-worker/main.js';
import { initEngine } from '../../src/engine/backend.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { LlamaModel } from '../../src/model/llama.js';
import { Kind, silentLogger, type GroupSpec } from '../../src/shared/protocol.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import { startTestCoordinator, until } from '../coordinator/helpers.js';
import { freePorts, sampleValue, scrape } from '../shared/metrics/helpers.js';
import { tinyLlamaConfig } from '../helpers.js';

const task = createTask('arithmetic', { seed: 3 });
const tok = tokenizerForTask(task);
const GROUPS = 3;

let coord: CoordinatorHandle;
let learner: ProtocolClient;
let worker: WorkerHandle;
let port: number;
const results = new Set<string>();

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  const config = tinyLlamaConfig(tok, { max_position_embeddings: 64 });
  const model = LlamaModel.create(config, 1);
  const weights = await model.toHostTensors();
  model.dispose();
  coord = await startTestCoordinator();
  learner = new ProtocolClient({ url: coord.url, role: 'learner', name: 'learner', token: null });
  learner.on(Kind.GroupResult, (m) => {
    results.add(m.group.groupId);
    learner.send({ kind: Kind.Verdict, groupId: m.group.groupId, admitted: true, reason: 'ok' });
  });
  await learner.start();
  learner.send({
    kind: Kind.RunSpec,
    spec: {
      runId: 'metrics-run',
      model: config as unknown as Record<string, unknown>,
      tokenizer: tok.toJSON(),
      specialTokens: { bosId: tok.bosId, eosId: tok.eosId, padId: tok.padId },
      task: { name: 'arithmetic', seed: 3, options: {}, jsOnly: false },
      rewardWeights: {},
      sampling: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 4, seed: 5 },
      rewards: { timeoutMs: 5_000, retries: 0, functions: [] },
    },
  });
  await learner.publishWeights(weights, 0, 'f32');
  port = await freePorts(1);
  worker = await startWorker({
    coordinator: coord.url,
    token: null,
    name: 'metrics-worker',
    capacity: 2,
    rewardThreads: 1,
    backend: 'cpu',
    log: silentLogger,
    metricsPort: port,
    metricsHost: '127.0.0.1',
  });
});

afterAll(async () => {
  await worker?.stop();
  await learner?.close();
  await coord?.close();
});

describe('rollout worker metrics endpoint', () => {
  it('serves /metrics on metricsPort with role worker and its name as instance', async () => {
    expect(worker.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    const { samples } = await scrape(worker.metricsUrl!);
    const ours = samples.filter((s) => s.name.startsWith('grpo_'));
    expect(ours.length).toBeGreaterThan(5);
    for (const s of ours) expect(s.labels, s.name).toMatchObject({ role: 'worker', instance: 'metrics-worker' });
    const cpu = samples.find((s) => s.name === 'process_cpu_user_seconds_total');
    expect(cpu?.labels).toMatchObject({ role: 'worker', instance: 'metrics-worker' }); // a served worker has process metrics
  });

  it('answers /healthz 200 once connected', async () => {
    await until(() => worker.stats().connected, 10_000, 'worker connected');
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, connected: true });
  });

  it('counts the groups it sampled and times each one, and each weights load', async () => {
    await until(() => worker.stats().policyVersion === 0, 10_000, 'weights v0 loaded');
    const groups = Array.from({ length: GROUPS }, (_, i): GroupSpec => {
      const ex = task.example('train', i);
      return { groupId: `m${i}`, promptIndex: i, prompt: ex.prompt, meta: ex.meta, groupSize: 2 };
    });
    learner.send({ kind: Kind.Enqueue, groups });
    await until(() => groups.every((g) => results.has(g.groupId)), 30_000, 'all groups back');

    const { samples } = await scrape(worker.metricsUrl!);
    const stats = worker.stats();
    expect(sampleValue(samples, 'grpo_worker_connected')).toBe(1);
    expect(sampleValue(samples, 'grpo_worker_policy_version')).toBe(0);
    expect(sampleValue(samples, 'grpo_worker_groups_total', { result: 'done' })).toBe(GROUPS);
    expect(sampleValue(samples, 'grpo_worker_groups_total', { result: 'failed' })).toBe(0);
    expect(sampleValue(samples, 'grpo_worker_completions_total')).toBe(GROUPS * 2);
    expect(sampleValue(samples, 'grpo_worker_tokens_generated_total')).toBe(stats.tokensGenerated);
    expect(sampleValue(samples, 'grpo_worker_sampling_calls_total')).toBe(stats.batches);
    // one observation per group sampled, summing to the worker's own totals
    expect(sampleValue(samples, 'grpo_worker_group_rollout_seconds_count')).toBe(GROUPS);
    expect(sampleValue(samples, 'grpo_worker_group_rollout_seconds_sum')).toBeCloseTo(stats.sampleSeconds, 6);
    expect(sampleValue(samples, 'grpo_worker_group_reward_seconds_count')).toBe(GROUPS);
    expect(sampleValue(samples, 'grpo_worker_group_reward_seconds_sum')).toBeCloseTo(stats.rewardSeconds, 6);
    expect(sampleValue(samples, 'grpo_worker_weights_load_seconds_count')).toBe(stats.weightsLoaded);
  });

  it('refuses a metrics port in use with a coded error and leaves nothing running', async () => {
    const start = startWorker({
      coordinator: coord.url,
      token: null,
      name: 'second',
      capacity: 1,
      rewardThreads: 1,
      backend: 'cpu',
      log: silentLogger,
      metricsPort: port,
      metricsHost: '127.0.0.1',
    });
    await expect(start).rejects.toSatisfy((e) => isGrpoError(e, 'GRPO_ERR_CONFIG') && /--metrics-port/.test((e as Error).message));
    await new Promise((r) => setTimeout(r, 200));
    expect(coord.stats().workers.map((w) => w.name)).toEqual(['metrics-worker']); // the refused one never joined
  });

  it('frees the port on stop', async () => {
    await worker.stop();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });
});
