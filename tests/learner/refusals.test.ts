/**
 * What the learner refuses from a worker, end to end: a real coordinator on port 0, runLearner
 * with a tiny checkpoint, and a worker written as raw frames that answers each leased group with
 * one kind of bad result. Each refusal must come back to that worker as an Error with its code
 * and the group id, be counted by the coordinator and in the learner's Prometheus counter, and
 * leave the learner running; a good group in the same lease is admitted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorHandle } from '../../src/coordinator/main.js';
import { runLearner } from '../../src/learner/main.js';
import { initEngine } from '../../src/engine/backend.js';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { parseConfig } from '../../src/shared/config.js';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import { Kind, silentLogger, type Completion, type GroupRollout, type GroupSpec } from '../../src/shared/protocol.js';
import { createTask, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import { RawPeer, until } from '../coordinator/helpers.js';
import { parseExposition, sampleValue } from '../shared/metrics/helpers.js';

const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };
const task = createTask('arithmetic', { seed: 5, options: TASK_OPTIONS });
const tokenizer = tokenizerForTask(task);

let root: string;
let coord: CoordinatorHandle;

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-refusals-'));
  const config = presetConfig('tiny', tokenizer, { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, max_position_embeddings: 32 });
  const model = LlamaModel.create(config, 3);
  await saveCheckpoint(join(root, 'init'), { config, weights: await model.toHostTensors(), tokenizer });
  model.dispose();
  coord = await startCoordinator({ port: 0, token: null, log: silentLogger });
});

afterAll(async () => {
  await coord?.close();
  await rm(root, { recursive: true, force: true });
});

const completion = (rewards: Record<string, number | null>): Completion => ({
  tokens: [tokenizer.eosId],
  logprobs: [-0.7],
  text: '',
  rewards,
  finishReason: 'stop',
});

/** The bad results, by what is wrong, with the code the worker must get back. */
const CASES: { name: string; code: string | null; make: (g: GroupSpec, v: number) => GroupRollout }[] = [
  {
    name: 'a reward the run does not have',
    code: 'GRPO_ERR_REWARD_NAMES',
    make: (g, v) => ({ groupId: g.groupId, policyVersion: v, promptTokens: promptIds(tokenizer, g.prompt), completions: [completion({ correct: 0, bogus: 0.5 }), completion({ correct: 0 })] }),
  },
  {
    name: 'prompt tokens without BOS',
    code: 'GRPO_ERR_PROMPT_TOKENS',
    make: (g, v) => ({ groupId: g.groupId, policyVersion: v, promptTokens: tokenizer.encode(g.prompt), completions: [completion({ correct: 1 }), completion({ correct: 0 })] }),
  },
  {
    name: 'no rewards at all',
    code: 'GRPO_ERR_BAD_ROLLOUT',
    make: (g, v) => ({ groupId: g.groupId, policyVersion: v, promptTokens: promptIds(tokenizer, g.prompt), completions: [completion({}), completion({})] }),
  },
  {
    name: 'a good group',
    code: null,
    make: (g, v) => ({ groupId: g.groupId, policyVersion: v, promptTokens: promptIds(tokenizer, g.prompt), completions: [completion({ correct: 1, format: 1 }), completion({ correct: 0 })] }),
  },
];

describe('learner refusals', () => {
  it('sends each refused group back to its worker as a coded Error, counts it, and admits the good one', async () => {
    const registry = createMetricsRegistry({ role: 'learner', instance: 'refusals-test', processMetrics: false });
    const stop = new AbortController();
    const learner = runLearner(
      parseConfig({ backend: 'cpu', seed: 5, task_options: TASK_OPTIONS, coordinator: coord.url, group_size: 2, prompts_per_step: 4, max_staleness: 0, max_gen_len: 4, eval_samples: 2, eval_interval: 0, save_interval: 0 }),
      { checkpoint: join(root, 'init'), out: join(root, 'run'), steps: 1, signal: stop.signal, metricsRegistry: registry },
    );
    const { peer } = await RawPeer.join(coord.url, 'worker', { capacity: 4 });
    try {
      const spec = await peer.next(Kind.RunSpec, () => true, 30_000);
      expect(spec.spec.rewards.functions).toEqual([{ name: 'correct', weight: 1, scope: 'completion', source: 'task' }]);
      expect(spec.spec.task.jsOnly).toBe(false);
      expect(spec.spec.specialTokens).toMatchObject({ bosId: tokenizer.bosId, eosId: tokenizer.eosId, padId: tokenizer.padId }); // and stopIds since main 49968fb
      const begin = await peer.next(Kind.WeightsBegin, () => true, 30_000);
      await peer.next(Kind.WeightsEnd);
      peer.send({ kind: Kind.Ready, policyVersion: begin.version });

      const groups: { leaseId: string; spec: GroupSpec }[] = [];
      while (groups.length < CASES.length) {
        const lease = await peer.next(Kind.Lease, () => true, 30_000);
        groups.push(...lease.groups.map((s) => ({ leaseId: lease.leaseId, spec: s })));
      }
      CASES.forEach((c, i) => {
        const { leaseId, spec: g } = groups[i];
        // stamped with the weights' resume epoch, as a worker does (a learner before this one made it > 0)
        peer.send({ kind: Kind.Groups, leaseId, results: [{ ...c.make(g, begin.version), ...(begin.epoch ? { epoch: begin.epoch } : {}) }] });
      });
      for (const [i, c] of CASES.entries()) {
        if (c.code === null) continue;
        const err = await peer.next(Kind.Error, (e) => e.ref === groups[i].spec.groupId, 30_000);
        expect(err.code, c.name).toBe(c.code);
        expect(err.message, c.name).toContain(groups[i].spec.groupId);
      }
      await until(() => coord.stats().ledger.admitted >= 1, 30_000, 'the good group admitted');
      expect(coord.stats().ledger.refusedResults).toBe(3);
      expect(peer.all(Kind.Error).filter((e) => e.ref === groups[3].spec.groupId)).toEqual([]);

      const { samples } = parseExposition(await registry.metrics());
      for (const reason of ['reward_names', 'prompt_tokens', 'bad_rollout']) {
        expect(sampleValue(samples, 'grpo_learner_groups_refused_total', { reason }), reason).toBe(1);
      }
    } finally {
      stop.abort();
      await peer.close();
      const summary = await learner;
      expect(summary.groups.refused).toBe(3);
    }
  }, 120_000);
});
