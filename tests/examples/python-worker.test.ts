/**
 * examples/python-worker/, a rollout worker written in Python from docs/protocol.md alone, against
 * a real coordinator (token-protected, port 0) and runLearner: the learner trains a few steps on
 * that worker's groups alone, refuses none of them, and the worker's log shows the weights it
 * assembled (bf16 here, CRC-checked) and the groups it sent. The test keeps the document honest:
 * a change to the protocol that the document does not describe breaks this worker.
 *
 * Needs a python3 with numpy, msgpack and websockets (Debian: python3-numpy python3-msgpack
 * python3-websockets; .ci/run installs them). Without them the file is skipped with a message,
 * unless GRPO_REQUIRE_TOOLS=1, which makes it fail. GRPO_PYTHON names the interpreter to use.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorHandle } from '../../src/coordinator/main.js';
import { runLearner, runSpecOf } from '../../src/learner/main.js';
import { initEngine } from '../../src/engine/backend.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { parseConfig } from '../../src/shared/config.js';
import { Kind, silentLogger } from '../../src/shared/protocol.js';
import { encodeWeights, weightsMessages } from '../../src/shared/weights-wire.js';
import { tf } from '../../src/engine/tf.js';
import { decodeF16, encodeF16 } from '../../src/shared/float16.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import { RawPeer } from '../coordinator/helpers.js';

const WORKER = fileURLToPath(new URL('../../examples/python-worker/worker.py', import.meta.url));
const DEPS = 'import numpy, msgpack, websockets';
const TOKEN = 'python-worker-token';
const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };

/** The first interpreter that imports the worker's libraries, or null. */
function findPython(): string | null {
  const candidates = [process.env.GRPO_PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => Boolean(p));
  return candidates.find((py) => spawnSync(py, ['-c', DEPS], { encoding: 'utf8' }).status === 0) ?? null;
}

const python = findPython();
const MISSING = 'no python3 with numpy, msgpack and websockets (Debian: apt-get install python3-numpy python3-msgpack python3-websockets; .ci/run installs them)';
if (python === null) {
  if (process.env.GRPO_REQUIRE_TOOLS === '1') throw new Error(`examples/python-worker test: ${MISSING}, and GRPO_REQUIRE_TOOLS=1`);
  console.warn(`skipping examples/python-worker test: ${MISSING}`);
}

let root: string;
let coord: CoordinatorHandle;
let child: ChildProcess | null = null;
let workerLog = '';

beforeAll(async () => {
  if (python === null) return;
  await initEngine({ backend: 'cpu', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-pyworker-'));
  const task = createTask('arithmetic', { seed: 5, options: TASK_OPTIONS });
  const tokenizer = tokenizerForTask(task);
  const config = presetConfig('tiny', tokenizer, { max_position_embeddings: 32 }); // the tiny preset, shorter tables
  const model = LlamaModel.create(config, 3);
  await saveCheckpoint(join(root, 'init'), { config, weights: await model.toHostTensors(), tokenizer });
  model.dispose();
  coord = await startCoordinator({ port: 0, token: TOKEN, log: silentLogger });
});

afterAll(async () => {
  child?.kill('SIGTERM');
  await coord?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Parsed JSON lines of the worker's stderr. */
const events = (): { event: string; [k: string]: unknown }[] =>
  workerLog
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

describe.skipIf(python === null)('examples/python-worker', () => {
  it('serves a learner for a few steps on its own: weights assembled, groups admitted, none refused', async () => {
    child = spawn(python!, [WORKER, '--coordinator', coord.url, '--name', 'py-worker', '--capacity', '2', '--max-seconds', '90'], {
      env: { ...process.env, GRPO_TOKEN: TOKEN, PYTHONDONTWRITEBYTECODE: '1' }, // no __pycache__ in the repository
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (d: Buffer) => (workerLog += d.toString()));
    const summary = await runLearner(
      parseConfig({
        backend: 'cpu',
        seed: 5,
        task_options: TASK_OPTIONS,
        coordinator: coord.url,
        token: TOKEN,
        group_size: 4,
        prompts_per_step: 2,
        max_staleness: 1,
        max_gen_len: 2, // short answers: an untrained model then writes numbers often enough for format and partial to vary
        reward_weights: { format: 0.5, partial: 0.5 },
        temperature: 0.9,
        top_k: 8,
        top_p: 0.95,
        weights_encoding: 'bf16',
        eval_samples: 4,
        eval_interval: 0,
        save_interval: 0,
      }),
      { checkpoint: join(root, 'init'), out: join(root, 'run'), steps: 3 },
    );
    expect(summary.steps, workerLog).toBe(3);
    expect(summary.groups.admitted).toBeGreaterThanOrEqual(6);
    expect(summary.policyVersion, workerLog).toBeGreaterThanOrEqual(1); // the steps moved the policy: new weights went out
    expect(summary.groups.refused, workerLog).toBe(0);
    expect(summary.groups.failed, workerLog).toBe(0);
    const ledger = coord.stats().ledger;
    expect(ledger.refusedResults).toBe(0);
    expect(ledger.invalidResults).toBe(0);
    expect(coord.stats().workers.map((w) => w.name)).toEqual(['py-worker']);

    const log = events();
    expect(log.find((e) => e.event === 'run_spec')).toMatchObject({ task: 'arithmetic', rewards: ['correct', 'format', 'partial'], unsupported: null });
    const received = log.filter((e) => e.event === 'weights_received');
    expect(received.length).toBeGreaterThanOrEqual(2); // the initial version and at least one trained one
    expect(received.every((e) => e.encoding === 'bf16')).toBe(true);
    expect(log.filter((e) => e.event === 'groups_sent').length).toBeGreaterThan(0);
    expect(log.filter((e) => e.event === 'learner_refused' || e.event === 'weights_failed')).toEqual([]);
  }, 90_000);

  it('reports log-probabilities the learner model agrees with, f16 weights in small chunks, and BOS-first prompt tokens', async () => {
    const local = await startCoordinator({ port: 0, token: TOKEN, log: silentLogger });
    const py = spawn(python!, [WORKER, '--coordinator', local.url, '--name', 'py-check', '--capacity', '2', '--max-seconds', '60'], {
      env: { ...process.env, GRPO_TOKEN: TOKEN, PYTHONDONTWRITEBYTECODE: '1' }, // no __pycache__ in the repository
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    py.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const ckpt = await loadCheckpoint(join(root, 'init'));
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
    try {
      const cfg = parseConfig({ seed: 9, task_options: TASK_OPTIONS, max_gen_len: 6, temperature: 0.7, top_p: 0.9 });
      const task = createTask('arithmetic', { seed: 9, options: TASK_OPTIONS });
      const spec = runSpecOf('logprob-check', cfg, model, { tokenizer: ckpt.tokenizer, task, moduleRewards: [], rewardWeights: { correct: 1, format: 0, partial: 0 } });
      const { peer: learner } = await RawPeer.join(local.url, 'learner', { token: TOKEN, runSpec: false });
      learner.send({ kind: Kind.RunSpec, spec });
      // f16 on the wire: the worker's weights are the f16-rounded ones, so compare with those
      const encoded = encodeWeights(ckpt.weights, 1, 'f16', 4096); // many chunks, a CRC over all of them
      for (const m of weightsMessages(encoded)) learner.send(m);
      const groups = [0, 1].map((i) => ({ groupId: `check.p${i}`, promptIndex: i, ...task.example('train', i), groupSize: 3 }));
      learner.send({ kind: Kind.Enqueue, groups });
      const results = await Promise.all(groups.map((g) => learner.next(Kind.GroupResult, (r) => r.group.groupId === g.groupId, 30_000)));
      const f16 = LlamaModel.fromHostTensors(ckpt.config, roundTripF16(ckpt.weights), { trainable: false });
      try {
        for (const [i, r] of results.entries()) {
          expect(r.group.policyVersion).toBe(1);
          expect(r.group.promptTokens).toEqual(promptIds(ckpt.tokenizer, groups[i].prompt));
          for (const c of r.group.completions) {
            expect(Object.keys(c.rewards)).toEqual(['correct']);
            expect(c.tokens.length).toBe(c.logprobs.length);
            if (c.finishReason === 'stop') expect(c.tokens.at(-1)).toBe(ckpt.tokenizer.eosId);
            expect(c.text).toBe(decodeCompletion(ckpt.tokenizer, c.tokens));
            const ids = [...r.group.promptTokens, ...c.tokens];
            const ours = tf.tidy(() => {
              const { logp } = f16.tokenLogProbs(tf.tensor2d([ids], [1, ids.length], 'int32'), { temperature: 0.7 });
              return logp.slice([0, r.group.promptTokens.length - 1], [1, c.tokens.length]).dataSync();
            });
            c.logprobs.forEach((lp, t) => expect(Math.abs(lp - ours[t]), `token ${t}: worker ${lp}, learner ${ours[t]}`).toBeLessThan(1e-4));
          }
        }
      } finally {
        f16.dispose();
      }
    } finally {
      model.dispose();
      py.kill('SIGTERM');
      await local.close();
    }
    expect(log).not.toContain('weights_failed');
  }, 60_000);

  it('answers the groups of a run it cannot serve with GroupFailed GRPO_ERR_RUN_SPEC, as section 10.5 says', async () => {
    const local = await startCoordinator({ port: 0, token: TOKEN, log: silentLogger, maxGroupAttempts: 2 });
    const py = spawn(python!, [WORKER, '--coordinator', local.url, '--name', 'py-keywords', '--capacity', '1', '--max-seconds', '60'], {
      env: { ...process.env, GRPO_TOKEN: TOKEN, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const ckpt = await loadCheckpoint(join(root, 'init'));
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
    try {
      const task = createTask('keywords', { seed: 1 }); // not implemented by the example
      const spec = runSpecOf('keywords-run', parseConfig({ task: 'keywords' }), model, { tokenizer: ckpt.tokenizer, task, moduleRewards: [], rewardWeights: {} });
      const { peer: learner } = await RawPeer.join(local.url, 'learner', { token: TOKEN, runSpec: false });
      learner.send({ kind: Kind.RunSpec, spec });
      for (const m of weightsMessages(encodeWeights(ckpt.weights, 1, 'f32'))) learner.send(m);
      learner.send({ kind: Kind.Enqueue, groups: [{ groupId: 'kw.p0', promptIndex: 0, prompt: 'fox moon:', meta: { keywords: ['fox', 'moon'] }, groupSize: 2 }] });
      const gone = await learner.next(Kind.GroupExhausted, () => true, 30_000);
      expect(gone).toMatchObject({ groupId: 'kw.p0', failures: 2, code: 'GRPO_ERR_TOO_MANY_ATTEMPTS' });
      expect(gone.message).toContain('GRPO_ERR_RUN_SPEC');
      expect(gone.message).toContain('keywords');
    } finally {
      model.dispose();
      py.kill('SIGTERM');
      await local.close();
    }
  }, 60_000);
});

/** Weights as the f16 wire format rounds them (back to float32). */
function roundTripF16(weights: NamedHostTensors): NamedHostTensors {
  return new Map(
    [...weights].map(([name, t]) => {
      const half = new Uint16Array(t.data.length);
      const back = new Float32Array(t.data.length);
      encodeF16(Float32Array.from(t.data), half);
      decodeF16(half, back);
      return [name, { shape: t.shape, data: back }];
    }),
  );
}
