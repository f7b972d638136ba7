/**
 * GRPO on the non-Llama families, through the pieces a run uses: the learner's RunSpec (its model
 * config), weights encoded for the wire by HF name and rebuilt by the WeightsAssembler, the
 * worker's RunState building its model from the RunSpec, sampling on the worker's model, one
 * GrpoTrainer step on the learner, and the new version broadcast back. The models have the
 * configs and tokenizer of the tiny Qwen2 (q/k/v biases, tied) and Gemma2 (soft-capping, sliding
 * window, sandwich norms) fixtures of tests/fixtures, with fresh weights (initializer_range 0.3):
 * the fixtures' own weights are so peaked that every sampled completion is the same.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { batchOptionsFromConfig, buildStepBatch, microBatchTensors } from '../../src/learner/batch.js';
import { runSpecOf } from '../../src/learner/main.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { loadCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import { RunState } from '../../src/rollout-worker/run-state.js';
import { parseConfig, type Config } from '../../src/shared/config.js';
import { silentLogger, type GroupRollout } from '../../src/shared/protocol.js';
import { encodeWeights, weightsMessages, WeightsAssembler } from '../../src/shared/weights-wire.js';
import { createTask } from '../../src/tasks/index.js';
import type { WeightsEncoding } from '../../src/shared/protocol.js';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const GROUP = 4;
const TEMPERATURE = 0.9;
const TEXTS = ['the cat', 'hello', 'on the mat, the'];

function config(): Config {
  return parseConfig({
    group_size: GROUP,
    micro_batch_size: 12,
    max_gen_len: 5,
    temperature: TEMPERATURE,
    kl_coef: 0,
    lr: 1e-3,
    steps: 1,
    lr_schedule: 'constant',
    warmup_steps: 0,
    dynamic_sampling: false,
    reward_threads: 1,
  });
}

/** Sends `model`'s weights through the wire codec in `encoding` and reassembles them. */
async function overTheWire(model: LlamaModel, version: number, encoding: WeightsEncoding) {
  const enc = encodeWeights(await model.toHostTensors(), version, encoding, 4096);
  const assembler = new WeightsAssembler();
  let out = null;
  for (const msg of weightsMessages(enc)) out = assembler.pushAndDecode(msg) ?? out;
  expect(out?.version).toBe(version);
  return out!.tensors;
}

/** Per completion, the sum of its token log-probs under `model`. */
async function sequenceLogp(model: LlamaModel, gs: GroupRollout[]): Promise<number[]> {
  const mb = buildStepBatch(gs, batchOptionsFromConfig(config(), model.config, {})).microBatches[0];
  const t = microBatchTensors(mb);
  const sums = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature: TEMPERATURE, leftPad: t.leftPad }).logp.mul(t.mask).sum(1));
  const out = Array.from(await sums.data());
  tf.dispose([sums, t.ids, t.mask, t.oldLogp]);
  return out;
}

async function logitsOf(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  const z = tf.tidy(() => model.logits(tf.tensor2d([ids], [1, ids.length], 'int32')));
  const data = (await z.data()) as Float32Array;
  z.dispose();
  return data;
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe.each(['qwen2', 'gemma2'])('a GRPO step on the tiny %s checkpoint', (family) => {
  let ckpt: Checkpoint;
  let worker: RunState;
  beforeAll(async () => {
    ckpt = await loadCheckpoint(join(FIXTURES, `hf-tiny-${family}`));
    worker = new RunState({ rewardThreads: 1, log: silentLogger });
  });
  afterAll(async () => {
    await worker.close();
  });

  it('the worker builds the same model from the RunSpec and wire weights, and learns from its groups', async () => {
    const cfg = config();
    const fresh = LlamaModel.create({ ...ckpt.config, initializer_range: 0.3 }, 7);
    const policy = LlamaModel.fromHostTensors(fresh.config, await fresh.toHostTensors());
    fresh.dispose();
    const task = createTask('arithmetic', { seed: 1, options: {} });
    const spec = runSpecOf('run-1', cfg, policy, { tokenizer: ckpt.tokenizer, task, moduleRewards: [], rewardWeights: {} });
    // the RunSpec travels through msgpack/JSON: a plain object with the family's fields
    const change = await worker.applySpec(JSON.parse(JSON.stringify(spec)));
    expect(worker.error).toBeNull();
    expect(change?.model).toBe(true);
    worker.loadWeights(0, await overTheWire(policy, 0, 'f32'));
    const ctx = worker.context()!;
    expect(ctx.model.config).toEqual(policy.config);
    expect(ctx.model.config.model_type).toBe(family);
    const probe = [1, ...ckpt.tokenizer.encode('the cat sat on the mat.')];
    expect(maxDiff(await logitsOf(ctx.model, probe), await logitsOf(policy, probe))).toBe(0);

    // the worker samples groups; even completions are rewarded
    const groups: GroupRollout[] = [];
    for (const [g, text] of TEXTS.entries()) {
      const prompt = [1, ...ckpt.tokenizer.encode(text)];
      const r = await sample(ctx.model, Array(GROUP).fill(prompt), {
        maxNewTokens: 5,
        temperature: TEMPERATURE,
        topK: 0,
        topP: 1,
        stopTokens: [2],
        seed: 10 + g,
      });
      groups.push({
        groupId: `g${g}`,
        policyVersion: 0,
        promptTokens: prompt,
        completions: r.tokens.map((tokens, j) => ({
          tokens,
          logprobs: r.logprobs[j],
          text: '',
          rewards: { r: j % 2 === 0 ? 1 : 0 },
          finishReason: r.finishReason[j],
        })),
      });
    }

    const trainer = new GrpoTrainer({ config: cfg, policy });
    const before = await sequenceLogp(policy, groups);
    const m = await trainer.step(groups, 0);
    const after = await sequenceLogp(policy, groups);
    expect(m.updated).toBe(true);
    expect(m.ratioMean).toBeCloseTo(1, 3); // the worker's log-probs are the learner's: same model
    expect(Number.isFinite(m.loss) && m.gradNorm > 0).toBe(true);
    const up = before.map((b, i) => after[i] - b);
    expect(Math.min(...up.filter((_, i) => i % 2 === 0))).toBeGreaterThan(0);
    expect(Math.max(...up.filter((_, i) => i % 2 === 1))).toBeLessThan(0);

    // version 1 reaches the worker in place, exactly in f32 and within bf16 rounding in bf16
    worker.loadWeights(1, await overTheWire(policy, 1, 'f32'));
    expect(maxDiff(await logitsOf(worker.context()!.model, probe), await logitsOf(policy, probe))).toBe(0);
    worker.loadWeights(1, await overTheWire(policy, 1, 'bf16'));
    const bf16 = maxDiff(await logitsOf(worker.context()!.model, probe), await logitsOf(policy, probe));
    expect(bf16).toBeGreaterThan(0);
    expect(bf16).toBeLessThan(0.1);
    trainer.dispose();
    policy.dispose();
  });
});
