/**
 * runLearner against a real coordinator on port 0 and an in-process fake rollout worker: a
 * ProtocolClient that builds its model from the RunSpec and the weights it is sent, and answers
 * leases with groups sampled by sample() on that model and scored by the task's rewards. The fake
 * worker holds back the first group it is leased until the policy has moved two versions on, so
 * that group arrives stale. Everything runs on the tf cpu backend with a tiny model. The
 * learner's per-step outputs are checked too: metrics.jsonl, the CSV, training_stats.json, its
 * Prometheus registry, and GET /metrics + /healthz on metrics_port.
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorHandle } from '../../src/coordinator/main.js';
import { runLearner, type LearnerSummary } from '../../src/learner/main.js';
import { parseConfig, type Config } from '../../src/shared/config.js';
import { initEngine } from '../../src/engine/backend.js';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import { tf } from '../../src/engine/tf.js';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { Kind, silentLogger, type GroupRollout, type GroupSpec, type RunSpec } from '../../src/shared/protocol.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask, type Task } from '../../src/tasks/index.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import { freePorts, parseExposition, sampleValue, scrape, type Sample } from '../shared/metrics/helpers.js';
import { until } from '../coordinator/helpers.js';

const TOKEN = 'learner-test-token';
const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };

/** A rollout worker in this process (see the file comment). */
class FakeWorker {
  readonly client: ProtocolClient;
  readonly leased: GroupSpec[] = [];
  readonly versionsLoaded: number[] = [];
  readonly epochsLoaded: number[] = [];
  private spec: RunSpec | null = null;
  private task: Task | null = null;
  private weights: { version: number; epoch: number; tensors: NamedHostTensors } | null = null;
  private model: LlamaModel | null = null;
  private version = -1;
  private epoch = 0; // resume epoch of the weights loaded, stamped on every group (docs/protocol.md)
  private newest = 0; // newest PolicyVersion announced
  private held: { leaseId: string; group: GroupRollout } | null = null;
  private holding: boolean;
  private work: Promise<void> = Promise.resolve();

  constructor(url: string, opts: { holdFirst: boolean }) {
    this.holding = opts.holdFirst;
    this.client = new ProtocolClient({ url, role: 'worker', name: 'fake-worker', capacity: 4, token: TOKEN });
    this.client.on(Kind.RunSpec, (m) => {
      this.spec = m.spec;
      this.task = createTask(m.spec.task.name, { seed: m.spec.task.seed, options: m.spec.task.options });
      this.load();
    });
    this.client.onEvent('weights', (w) => {
      this.weights = { version: w.version, epoch: w.epoch, tensors: w.tensors };
      this.load();
    });
    this.client.on(Kind.PolicyVersion, (m) => {
      this.newest = Math.max(this.newest, m.version);
      this.release();
    });
    this.client.on(Kind.Lease, (lease) => {
      this.leased.push(...lease.groups);
      this.work = this.work.then(() => this.serve(lease.leaseId, lease.groups));
    });
  }

  /** Swaps to the newest weights once the RunSpec is known (weights may come first). */
  private load(): void {
    if (this.spec === null || this.weights === null || (this.weights.version === this.version && this.weights.epoch === this.epoch)) return;
    const w = this.weights;
    this.work = this.work.then(() => {
      this.model?.dispose();
      this.model = LlamaModel.fromHostTensors(this.spec!.model as unknown as LlamaConfig, w.tensors, { trainable: false });
      this.version = w.version;
      this.epoch = w.epoch;
      this.versionsLoaded.push(w.version);
      this.epochsLoaded.push(w.epoch);
      this.client.send({ kind: Kind.Ready, policyVersion: w.version });
    });
  }

  private async serve(leaseId: string, groups: GroupSpec[]): Promise<void> {
    const tokenizer = tokenizerForTask(this.task!);
    const s = this.spec!.sampling;
    for (const g of groups) {
      const prompt = promptIds(tokenizer, g.prompt);
      const r = await sample(this.model!, Array.from({ length: g.groupSize }, () => prompt), {
        maxNewTokens: s.maxNewTokens,
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
        stopTokens: [tokenizer.eosId],
        seed: s.seed + this.leased.length,
      });
      const completions = r.tokens.map((tokens, i) => {
        const text = decodeCompletion(tokenizer, tokens);
        const rewards = Object.fromEntries(this.task!.rewards.map((rw) => [rw.name, rw.fn(g.prompt, text, g.meta) as number]));
        return { tokens, logprobs: r.logprobs[i], text, rewards, finishReason: r.finishReason[i] };
      });
      const group: GroupRollout = { groupId: g.groupId, policyVersion: this.version, ...(this.epoch > 0 ? { epoch: this.epoch } : {}), promptTokens: prompt, completions };
      if (this.holding) {
        this.holding = false;
        this.held = { leaseId, group };
        continue;
      }
      this.client.send({ kind: Kind.Groups, leaseId, results: [group] });
    }
  }

  /** Sends the held group once the policy is two versions past the one that sampled it. */
  private release(): void {
    if (this.held === null || this.newest < this.held.group.policyVersion + 2) return;
    this.client.send({ kind: Kind.Groups, leaseId: this.held.leaseId, results: [this.held.group] });
    this.held = null;
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.work;
    this.model?.dispose();
  }
}

let root: string;
let coord: CoordinatorHandle;
let baseTensors = 0;

function config(over: Record<string, unknown> = {}): Config {
  return parseConfig({
    backend: 'cpu',
    seed: 5,
    task_options: TASK_OPTIONS,
    coordinator: coord.url,
    token: TOKEN,
    group_size: 4,
    prompts_per_step: 2,
    max_staleness: 1,
    max_gen_len: 6,
    micro_batch_size: 8,
    kl_coef: 0.05,
    lr: 3e-3,
    eval_samples: 4,
    eval_interval: 0,
    save_interval: 0,
    log_csv: join(root, 'run', 'metrics.csv'),
    // the demo's defaults tuned for a long run; these tests pin a plain short one
    lr_schedule: 'constant',
    warmup_steps: 0,
    dynamic_sampling: false,
    replay_buffer_size: 0,
    ...over,
  });
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-learner-'));
  const task = createTask('arithmetic', { seed: 5, options: TASK_OPTIONS });
  const tokenizer = tokenizerForTask(task);
  const modelConfig = presetConfig('tiny', tokenizer, {
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 1,
    max_position_embeddings: 64,
    initializer_range: 0.2,
  });
  const model = LlamaModel.create(modelConfig, 3);
  await saveCheckpoint(join(root, 'init'), { config: modelConfig, weights: await model.toHostTensors(), tokenizer });
  model.dispose();
  coord = await startCoordinator({ port: 0, token: TOKEN, log: silentLogger, heartbeatMs: 500, peerTimeoutMs: 10_000 });
  baseTensors = tf.memory().numTensors;
});

afterAll(async () => {
  await coord?.close();
  await rm(root, { recursive: true, force: true });
});

interface Logged {
  event: string;
  fields: Record<string, unknown>;
}

async function learn(cfg: Config, opts: { steps: number; resume?: string; holdFirst?: boolean; registry?: Registry; worker?: FakeWorker }) {
  const events: Logged[] = [];
  const worker = opts.worker ?? new FakeWorker(coord.url, { holdFirst: opts.holdFirst ?? false });
  const started = worker.client.start();
  let summary: LearnerSummary;
  try {
    summary = await runLearner(cfg, {
      checkpoint: join(root, 'init'),
      out: join(root, 'run'),
      steps: opts.steps,
      resume: opts.resume,
      log: (_level, event, fields = {}) => events.push({ event, fields }),
      metricsRegistry: opts.registry,
    });
  } finally {
    await started;
    if (opts.worker === undefined) await worker.close();
  }
  const trained = events.filter((e) => e.event === 'step_groups').flatMap((e) => e.fields.prompts as number[]);
  return { summary, events, worker, trained };
}

describe('runLearner', () => {
  let first: Awaited<ReturnType<typeof learn>>;
  const registry = createMetricsRegistry({ role: 'learner', instance: 'learner-test', processMetrics: false });

  it('trains on worker groups, publishes each version, judges each group once and re-queues a stale one', async () => {
    first = await learn(config(), { steps: 3, holdFirst: true, registry });
    const { summary, events, worker } = first;
    expect(summary.steps).toBe(3);
    expect(summary.stepsThisRun).toBe(3);
    expect(summary.policyVersion).toBe(3);
    expect(summary.interrupted).toBe(false);
    expect(summary.baselineAccuracy).not.toBeNull();
    expect(summary.finalAccuracy).not.toBeNull();

    // one step line per step, staleness within the bound
    const steps = events.filter((e) => e.event === 'step').map((e) => e.fields);
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    for (const s of steps) expect(s.stalenessMax as number).toBeLessThanOrEqual(1);
    const jsonl = (await readFile(join(root, 'run', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(jsonl.map((r) => r.version)).toEqual([1, 2, 3]);
    const csv = (await readFile(join(root, 'run', 'metrics.csv'), 'utf8')).trim().split('\n');
    expect(csv[0].split(',')).toEqual(expect.arrayContaining(['step', 'version', 'rewardMean', 'rewards.correct', 'kl', 'waitSeconds']));
    expect(csv).toHaveLength(4);

    // the held group came back two versions late: dropped as stale, its prompt sent out again under a new id
    expect(summary.groups.droppedStale).toBeGreaterThanOrEqual(1);
    const stale = events.find((e) => e.event === 'group_stale')!.fields;
    const again = worker.leased.filter((g) => g.promptIndex === stale.prompt);
    expect(again.length).toBeGreaterThanOrEqual(2);
    expect(new Set(again.map((g) => g.groupId)).size).toBe(again.length);

    // the coordinator saw each verdict once, and the same ones the learner counted
    const ledger = coord.stats().ledger;
    expect(ledger.repeatVerdicts).toBe(0);
    expect(ledger.unknownVerdicts).toBe(0);
    expect(ledger.admitted).toBe(summary.groups.admitted);
    expect(ledger.droppedStale).toBe(summary.groups.droppedStale);
    expect(summary.groups.redispatched).toBe(ledger.redispatched);

    // versions 0..3 were published; the worker loaded new weights as they came
    expect(coord.stats().weights.version).toBe(3);
    expect(worker.versionsLoaded[0]).toBe(0);
    expect(worker.versionsLoaded.length).toBeGreaterThanOrEqual(2);

    // no prompt trained twice; the tensors of the run are all freed
    expect(new Set(first.trained).size).toBe(first.trained.length);
    expect(tf.memory().numTensors).toBe(baseTensors);
  });

  it('writes training_stats.json: one array per metric, one entry per step', async () => {
    const stats = JSON.parse(await readFile(join(root, 'run', 'training_stats.json'), 'utf8')) as Record<string, unknown[]>;
    expect(stats.step).toEqual([1, 2, 3]);
    expect(stats.version).toEqual([1, 2, 3]);
    for (const key of ['rewardMean', 'rewards.correct', 'loss', 'kl', 'entropy', 'clipRegion', 'lengthMean', 'truncated', 'stepSeconds']) {
      expect(stats[key], key).toHaveLength(3);
    }
    const steps = first.events.filter((e) => e.event === 'step').map((e) => e.fields);
    expect(stats.loss).toEqual(steps.map((s) => (Number.isFinite(s.loss) ? s.loss : null)));
  });

  it('reports every step, the evaluations and the weights uploads to its Prometheus registry', async () => {
    const { samples } = parseExposition(await registry.metrics());
    const v = (name: string, labels?: Record<string, string>) => sampleValue(samples, name, labels);
    const steps = first.events.filter((e) => e.event === 'step').map((e) => e.fields);
    const last = steps.at(-1)!;
    for (const s of samples) expect(s.labels, s.name).toMatchObject({ role: 'learner', instance: 'learner-test' });
    expect(v('grpo_learner_steps_total')).toBe(3);
    expect(v('grpo_learner_step')).toBe(3);
    expect(v('grpo_learner_policy_version')).toBe(3);
    expect(v('grpo_learner_learning_rate')).toBe(last.lr);
    expect(v('grpo_learner_reward_mean')).toBeCloseTo(last.rewardMean as number, 12);
    expect(v('grpo_learner_reward_function_mean', { reward: 'correct' })).toBeCloseTo((last.rewards as Record<string, number>).correct, 12);
    expect(v('grpo_learner_kl')).toBeCloseTo(last.kl as number, 12);
    expect(v('grpo_learner_completion_truncated_ratio')).toBeCloseTo(last.truncated as number, 12);
    expect(v('grpo_learner_train_accuracy_ratio')).toBeCloseTo(last.accuracy as number, 12);
    expect(v('grpo_learner_staleness_limit')).toBe(1);
    expect(v('grpo_learner_staleness_max')).toBe(last.stalenessMax);
    // 2 groups a step: one staleness observation and one trained group each
    expect(v('grpo_learner_trained_groups_total')).toBe(6);
    expect(v('grpo_learner_group_staleness_count')).toBe(6);
    expect(v('grpo_learner_group_staleness_bucket', { le: '1' })).toBe(6); // none beyond max_staleness
    expect(v('grpo_learner_step_seconds_count')).toBe(3);
    expect(v('grpo_learner_step_seconds_sum')).toBeCloseTo(steps.reduce((a, s) => a + (s.stepSeconds as number), 0), 6);
    expect(v('grpo_learner_data_wait_seconds_count')).toBe(3);
    // versions 0-3 uploaded; one superseded before its last frame is not counted
    const publishes = v('grpo_learner_weights_publish_seconds_count')!;
    expect(publishes).toBeGreaterThanOrEqual(1);
    expect(publishes).toBeLessThanOrEqual(4);
    expect(v('grpo_learner_weights_published_bytes_total')).toBe(publishes * coord.stats().weights.bytes);
    expect(v('grpo_learner_eval_accuracy_ratio')).toBe(first.summary.finalAccuracy);
    expect(v('grpo_learner_eval_k')).toBe(1);
    expect(v('grpo_learner_eval_pass_at_k_ratio')).toBeUndefined(); // k = 1: no pass@k
  });

  it('resumes at the saved step, version and data cursor, training no prompt twice', async () => {
    const ckpt = join(root, 'run', 'checkpoint');
    const state = JSON.parse(await readFile(join(ckpt, 'trainer_state.json'), 'utf8'));
    expect(state.step).toBe(3);
    expect(state.policyVersion).toBe(3);
    expect(state.phase).toBe('grpo');
    const pending: number[] = state.dataCursor.pending;
    await cp(ckpt, join(root, 'ckpt3'), { recursive: true }); // for the rollback test below

    const second = await learn(config(), { steps: 5, resume: ckpt });
    expect(second.summary.steps).toBe(5);
    expect(second.summary.stepsThisRun).toBe(2);
    expect(second.summary.policyVersion).toBe(5);
    expect(second.summary.baselineAccuracy).toBe(first.summary.baselineAccuracy); // carried over, not re-measured
    const resumed = second.events.find((e) => e.event === 'learner_resumed')!.fields;
    expect(resumed.step).toBe(3);

    // the first prompts handed out after the resume are the checkpoint's pending ones, in order
    const tag = second.events.find((e) => e.event === 'learner_start')!.fields.groupTag as string;
    const enqueued = second.worker.leased.filter((g) => g.groupId.startsWith(`${tag}.`));
    expect(enqueued.slice(0, pending.length).map((g) => g.promptIndex).sort()).toEqual([...pending].sort());

    // across both runs, no prompt was trained twice, and none below the cursor was lost
    const all = [...first.trained, ...second.trained];
    expect(new Set(all).size).toBe(all.length);
    const jsonl = (await readFile(join(root, 'run', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(jsonl.map((r) => r.step)).toEqual([1, 2, 3, 4, 5]); // continued, not restarted
    const stats = JSON.parse(await readFile(join(root, 'run', 'training_stats.json'), 'utf8'));
    expect(stats.step).toEqual([1, 2, 3, 4, 5]);
    expect((await readFile(join(root, 'run', 'metrics.csv'), 'utf8')).trim().split('\n')).toHaveLength(6); // one header
    const end = JSON.parse(await readFile(join(ckpt, 'trainer_state.json'), 'utf8'));
    expect(end.step).toBe(5);
    const skipped = end.groups.failed as number;
    const accounted = new Set([...all, ...end.dataCursor.pending]);
    expect(accounted.size + skipped).toBe(end.dataCursor.next);
    expect(tf.memory().numTensors).toBe(baseTensors);
  });

  it('rolls the coordinator back to its version when resumed from an older checkpoint, and a worker holding the newer version moves to the new epoch', async () => {
    expect(coord.stats().policyVersion).toBe(5);
    const before = coord.stats().epoch!; // one epoch per learner process so far
    expect(before).toBeGreaterThanOrEqual(1);
    // a worker that stays up across the restart: it holds v5 of the second run's epoch
    const worker = new FakeWorker(coord.url, { holdFirst: false });
    try {
      await worker.client.start();
      await until(() => worker.versionsLoaded.length === 1, 10_000, 'v5 loaded');
      const third = await learn(config(), { steps: 4, resume: join(root, 'ckpt3'), worker });
      expect(third.summary.steps).toBe(4);
      expect(third.summary.policyVersion).toBe(4);
      expect(coord.stats()).toMatchObject({ policyVersion: 4, epoch: before + 1 });
      expect(coord.stats().weights.version).toBe(4);
      // the lower versions of the new epoch reached the worker, which never refused them
      // (this fake worker may load one version twice when the RunSpec lands while it swaps)
      const loaded = worker.versionsLoaded.map((v, i) => `e${worker.epochsLoaded[i]}/v${v}`).filter((x, i, all) => x !== all[i - 1]);
      expect(loaded).toEqual([`e${before}/v5`, `e${before + 1}/v3`, `e${before + 1}/v4`]);
      const state = JSON.parse(await readFile(join(root, 'run', 'checkpoint', 'trainer_state.json'), 'utf8'));
      expect(state.epoch).toBe(before + 1); // the next resume asks for an epoch above it
      expect(third.events.find((e) => e.event === 'learner_connected')!.fields.epoch).toBe(before + 1);
    } finally {
      await worker.close();
    }
  });

  it('rolls back from a fresh start of the same checkpoint too', async () => {
    const third = await learn(config(), { steps: 4, resume: join(root, 'ckpt3') });
    expect(third.summary.policyVersion).toBe(4);
    expect(coord.stats().policyVersion).toBe(4);
    expect(third.worker.versionsLoaded).toContain(3); // the resumed weights reached the worker
    // groups sampled with v5 (which a worker may hold before the learner reconnects) are never trained
    for (const e of third.events.filter((x) => x.event === 'step')) {
      expect(e.fields.stalenessMax as number).toBeGreaterThanOrEqual(0);
      expect(e.fields.stalenessMax as number).toBeLessThanOrEqual(1);
    }
    expect(tf.memory().numTensors).toBe(baseTensors);
  });

  it('stops between steps on abort and checkpoints', async () => {
    const abort = new AbortController();
    const worker = new FakeWorker(coord.url, { holdFirst: false });
    void worker.client.start();
    try {
      const summary = await runLearner(config({ kl_coef: 0, log_csv: null }), {
        checkpoint: join(root, 'init'),
        out: join(root, 'aborted'),
        steps: 50,
        signal: abort.signal,
        log: (_l, event) => {
          if (event === 'step') abort.abort();
        },
      });
      expect(summary.interrupted).toBe(true);
      expect(summary.steps).toBe(1);
      expect(summary.finalAccuracy).toBeNull();
      const state = JSON.parse(await readFile(join(root, 'aborted', 'checkpoint', 'trainer_state.json'), 'utf8'));
      expect(state.step).toBe(1);
    } finally {
      await worker.close();
    }
    expect(tf.memory().numTensors).toBe(baseTensors);
  });

  it('serves GET /metrics and /healthz on metrics_port while it runs, and frees the port after', async () => {
    const port = await freePorts(1);
    const abort = new AbortController();
    const worker = new FakeWorker(coord.url, { holdFirst: false });
    void worker.client.start();
    let scraped: Promise<{ samples: Sample[]; health: { status: number; body: unknown } }> | null = null;
    try {
      await runLearner(config({ kl_coef: 0, log_csv: null, metrics_port: port, metrics_host: '127.0.0.1' }), {
        checkpoint: join(root, 'init'),
        out: join(root, 'served'),
        steps: 50,
        signal: abort.signal,
        log: (_l, event) => {
          if (event !== 'step' || scraped !== null) return;
          // scraped while the learner goes on; the run stops once the answers are in
          scraped = (async () => {
            const { samples } = await scrape(`http://127.0.0.1:${port}/metrics`);
            const res = await fetch(`http://127.0.0.1:${port}/healthz`);
            return { samples, health: { status: res.status, body: await res.json() } };
          })().finally(() => abort.abort());
        },
      });
    } finally {
      await worker.close();
    }
    expect(scraped).not.toBeNull();
    const { samples, health } = await scraped!;
    expect(sampleValue(samples, 'grpo_learner_steps_total', { role: 'learner' })).toBeGreaterThanOrEqual(1);
    expect(samples.find((s) => s.name === 'process_cpu_user_seconds_total')?.labels.role).toBe('learner');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ ok: true, role: 'learner', connected: true });
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
    expect(tf.memory().numTensors).toBe(baseTensors);
  });
});
