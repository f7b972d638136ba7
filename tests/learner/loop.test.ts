/**
 * The learner's training loop with a real GrpoTrainer, evaluation and checkpoints on a tiny model,
 * and an in-memory inbox in place of the coordinator: periodic eval and `best`, periodic save of
 * `checkpoint`, and the sample-completion log. The held-out accuracy of each eval is set by the
 * test through the task's isCorrect (a quota of accepted problems per step), so `best` has a known
 * history whatever the model learns.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { bestDir, latestDir } from '../../src/learner/checkpointing.js';
import { CompletionsLog } from '../../src/learner/completions-log.js';
import { DataCursor } from '../../src/learner/data-cursor.js';
import { EMPTY_COUNTS, type AdmittedGroup, type GroupsInbox } from '../../src/learner/groups-inbox.js';
import { MetricsWriter } from '../../src/learner/logging.js';
import { trainLoop, type LearnerRun } from '../../src/learner/loop.js';
import { learnerMetrics } from '../../src/learner/prometheus.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { LlamaModel } from '../../src/model/llama.js';
import { parseConfig, type Config } from '../../src/shared/config.js';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import type { ProtocolClient } from '../../src/shared/ws-client.js';
import { Rng } from '../../src/shared/rng.js';
import { completionIds } from '../../src/tasks/encoding.js';
import { createTask, tokenizerForTask, type Task } from '../../src/tasks/index.js';
import { tinyLlamaConfig } from '../helpers.js';

const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };
const EVAL_SAMPLES = 4;
/** Held-out problems the task accepts at the eval after each step: accuracies 0.25, 0.75, 0.5. */
const QUOTA: Record<number, number> = { 2: 1, 4: 3, 6: 2 };

let root: string;
beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-loop-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** An inbox that always has groups: each a train problem with one right and one wrong completion. */
function memoryInbox(task: Task, tokenizer: ReturnType<typeof tokenizerForTask>, groupSize: number): GroupsInbox {
  let next = 0;
  let version = 0;
  const counts = { ...EMPTY_COUNTS };
  const inbox = {
    counts,
    buffered: 1_000,
    pending: 0,
    waitFor: async () => {},
    take(n: number): AdmittedGroup[] {
      return Array.from({ length: n }, () => {
        const i = next++;
        const ex = task.example('train', i);
        const completions = Array.from({ length: groupSize }, (_, j) => {
          const text = j === 0 ? ex.target! : '0';
          const tokens = completionIds(tokenizer, text);
          return { tokens, logprobs: tokens.map(() => -1), text, rewards: { correct: j === 0 ? 1 : 0 }, finishReason: 'stop' as const };
        });
        const spec = { groupId: `g${i}`, promptIndex: i, prompt: ex.prompt, meta: ex.meta, groupSize };
        const rollout = { groupId: spec.groupId, policyVersion: version, promptTokens: [tokenizer.bosId!, ...tokenizer.encode(ex.prompt)], completions };
        counts.admitted += 1;
        return { spec, rollout, attempts: 0, worker: 'memory' };
      });
    },
    trained: () => {},
    setVersion: (v: number) => {
      version = v;
    },
    fill: () => {},
  };
  return inbox as unknown as GroupsInbox;
}

describe('trainLoop', () => {
  let run: LearnerRun;
  const events: { event: string; fields: Record<string, unknown> }[] = [];

  beforeAll(async () => {
    const config: Config = parseConfig({
      backend: 'cpu',
      seed: 3,
      task_options: TASK_OPTIONS,
      steps: 8,
      group_size: 2,
      prompts_per_step: 2,
      max_gen_len: 6,
      micro_batch_size: 4,
      kl_coef: 0,
      eval_interval: 2,
      save_interval: 3,
      eval_samples: EVAL_SAMPLES,
      eval_k: 1,
      log_completions_steps: 4,
      lr_schedule: 'constant',
      warmup_steps: 0,
      dynamic_sampling: false,
      replay_buffer_size: 0,
    });
    const base = createTask('arithmetic', { seed: 3, options: TASK_OPTIONS });
    const heldOut = new Map(Array.from({ length: EVAL_SAMPLES }, (_, i) => [base.example('test', i).prompt, i]));
    // accepts the first QUOTA[step] held-out problems at the eval after `step`, nothing else
    const task: Task = { ...base, isCorrect: (prompt) => (heldOut.get(prompt) ?? Infinity) < (QUOTA[run.step] ?? 0) };
    const tokenizer = tokenizerForTask(task);
    const policy = LlamaModel.create(tinyLlamaConfig(tokenizer, { max_position_embeddings: 64, initializer_range: 0.2 }), 3);
    const out = join(root, 'run');
    const publishes: number[] = [];
    const client = {
      publishWeights: async (_t: unknown, version: number) => {
        publishes.push(version);
        return { sent: true, bytes: 0 };
      },
    } as unknown as ProtocolClient;
    run = {
      config,
      out,
      log: (_level, event, fields = {}) => events.push({ event, fields }),
      task,
      tokenizer,
      policy,
      trainer: new GrpoTrainer({ config, policy }),
      cursor: new DataCursor(),
      inbox: memoryInbox(task, tokenizer, config.group_size),
      client,
      rng: new Rng(config.seed),
      runId: 'loop-test',
      step: 0,
      baseline: null,
      lastEval: null,
      best: null,
      metrics: new MetricsWriter(join(out, 'metrics.jsonl'), null, { append: false }),
      curriculum: null,
      replay: null,
      telemetry: learnerMetrics(createMetricsRegistry({ role: 'learner', processMetrics: false }), { maxStaleness: config.max_staleness }),
      progress: null,
      completions: new CompletionsLog(join(out, 'completions.jsonl'), { append: false }),
      stop: new AbortController().signal,
      upload: Promise.resolve(),
    };
    expect(await trainLoop(run)).toBe(8);
  });

  afterAll(() => {
    run.trainer.dispose();
    run.policy.dispose();
  });

  it('evaluates every eval_interval steps before the last and keeps `best` at the best accuracy', async () => {
    const evals = events.filter((e) => e.event === 'eval').map((e) => [e.fields.step, e.fields.accuracy]);
    expect(evals).toEqual([
      [2, 0.25],
      [4, 0.75],
      [6, 0.5],
    ]); // step 8 is the run's end: the caller evaluates once more
    const bests = events.filter((e) => e.event === 'checkpoint_saved' && e.fields.kind === 'best').map((e) => e.fields.step);
    expect(bests).toEqual([2, 4]); // 0.5 at step 6 does not beat 0.75
    expect(run.best).toMatchObject({ step: 4, accuracy: 0.75, policyVersion: 4 });
    expect(run.lastEval).toMatchObject({ step: 6, accuracy: 0.5 });
    const state = JSON.parse(await readFile(join(bestDir(run.out), 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ phase: 'grpo', step: 4, policyVersion: 4, best: { step: 4, accuracy: 0.75 } });
    expect(existsSync(join(bestDir(run.out), 'optimizer.safetensors'))).toBe(false); // best is for inference, not resume
  });

  it('saves `checkpoint` every save_interval steps before the last, with the optimizer and the eval history', async () => {
    const saves = events.filter((e) => e.event === 'checkpoint_saved' && e.fields.kind === 'latest').map((e) => e.fields.step);
    expect(saves).toEqual([3, 6]);
    const state = JSON.parse(await readFile(join(latestDir(run.out), 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ step: 6, policyVersion: 6, lastEval: { step: 6, accuracy: 0.5 }, best: { step: 4, accuracy: 0.75 } });
    expect(state.dataCursor).toBeDefined();
    expect(existsSync(join(latestDir(run.out), 'optimizer.safetensors'))).toBe(true);
  });

  it('logs sample completions every log_completions_steps steps, and advantage and log-prob stats every step', async () => {
    const lines = (await readFile(join(run.out, 'completions.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([4, 4, 4, 4, 8, 8, 8, 8]); // 2 prompts x group_size 2, at steps 4 and 8
    const first = lines[0];
    expect(first).toMatchObject({ policyVersion: 4, reward: 1, rewards: { correct: 1 }, finishReason: 'stop' });
    expect(first.advantage).toBeGreaterThan(0); // the right completion of a group with one right, one wrong
    expect(lines[1].advantage).toBeCloseTo(-first.advantage, 5);
    expect(first.prompt).toBe(createTask('arithmetic', { seed: 3, options: TASK_OPTIONS }).example('train', 6).prompt); // step 4's first group
    const records = (await readFile(join(run.out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(8);
    for (const r of records) {
      expect(r.advantageMean).toBeCloseTo(0, 6);
      expect(r.advantageStd).toBeGreaterThan(0);
      expect(r.logprobMean).toBeCloseTo(-1, 9); // every sampled token had log-prob -1
    }
    expect(events.filter((e) => e.event === 'completions_logged').map((e) => e.fields.step)).toEqual([4, 8]);
  });
});
