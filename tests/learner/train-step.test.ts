import { beforeAll, describe, expect, it } from 'vitest';
import { batchOptionsFromConfig, buildStepBatch, microBatchTensors, type MicroBatchTensors } from '../../src/learner/batch.js';
import { ACCUMULATION_WEIGHTS, GrpoTrainer, accumulateGradients, lossOptionsFromConfig } from '../../src/learner/train-step.js';
import { parseConfig, type Config } from '../../src/shared/config.js';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import type { LossType } from '../../src/grpo/index.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import type { GroupRollout } from '../../src/shared/protocol.js';
import { tinyLlamaConfig } from '../helpers.js';

const GROUP = 4;
const TEMPERATURE = 0.9;
const PROMPTS = [[1, 5, 6, 7], [1, 9], [1, 3, 4]];

let base: NamedHostTensors; // the initial policy's weights: every test starts from them
let modelConfig: LlamaModel['config'];
let groups: GroupRollout[]; // sampled by the initial policy; reward 1 for even, 0 for odd completions

function config(o: Record<string, unknown> = {}): Config {
  return parseConfig({
    group_size: GROUP,
    micro_batch_size: 12,
    max_gen_len: 6,
    temperature: TEMPERATURE,
    kl_coef: 0,
    lr: 3e-3,
    steps: 10,
    lr_schedule: 'constant', // the demo's defaults (cosine, warm-up, dynamic sampling) pinned off
    warmup_steps: 0,
    dynamic_sampling: false,
    ...o,
  });
}

function policy(): LlamaModel {
  return LlamaModel.fromHostTensors(modelConfig, base);
}

/** A fresh policy trained on `groups` for `steps` steps under `o`: its weights after, and the last step's metrics. */
async function trainFresh(o: Record<string, unknown>, steps: number) {
  const model = policy();
  const trainer = new GrpoTrainer({ config: config(o), policy: model });
  let metrics!: Awaited<ReturnType<GrpoTrainer['step']>>;
  for (let s = 0; s < steps; s++) metrics = await trainer.step(groups, s);
  const weights = [...(await model.toHostTensors()).values()].map((t) => t.data);
  trainer.dispose();
  model.dispose();
  return { weights, metrics };
}

/** The largest elementwise difference between two weight lists of the same shapes. */
function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let diff = 0;
  a.forEach((w, i) => w.forEach((x, j) => (diff = Math.max(diff, Math.abs(x - b[i][j])))));
  return diff;
}

/** Per completion, the sum of its token log-probs under `model` (the batch layout, one micro-batch). */
async function sequenceLogp(model: LlamaModel, gs: GroupRollout[]): Promise<number[]> {
  const opts = batchOptionsFromConfig(config({ micro_batch_size: 1000 }), model.config, {});
  const mb = buildStepBatch(gs, opts).microBatches[0];
  const t = microBatchTensors(mb);
  const sums = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature: TEMPERATURE, leftPad: t.leftPad }).logp.mul(t.mask).sum(1));
  const out = Array.from(await sums.data());
  tf.dispose([sums, t.ids, t.mask, t.oldLogp]);
  return out;
}

function maxAbsDiff(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (const [name, ga] of a) {
    const x = ga.dataSync();
    const y = b.get(name)!.dataSync();
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(x[i]));
    }
  }
  return { diff, scale };
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  modelConfig = tinyLlamaConfig({ vocabSize: 20, bosId: 1, eosId: 2, padId: 0 }, { max_position_embeddings: 32, initializer_range: 0.3 }, 'gqa');
  const model = LlamaModel.create(modelConfig, 3);
  base = await model.toHostTensors();
  groups = [];
  for (let g = 0; g < PROMPTS.length; g++) {
    const r = await sample(model, Array(GROUP).fill(PROMPTS[g]), {
      maxNewTokens: 6,
      temperature: TEMPERATURE,
      topK: 0,
      topP: 1,
      stopTokens: [2],
      seed: 100 + g,
    });
    groups.push({
      groupId: `g${g}`,
      policyVersion: 0,
      promptTokens: PROMPTS[g],
      completions: r.tokens.map((tokens, j) => ({
        tokens,
        logprobs: r.logprobs[j],
        text: '',
        rewards: { r: j % 2 === 0 ? 1 : 0 },
        finishReason: r.finishReason[j],
      })),
    });
  }
  model.dispose();
});

describe('GrpoTrainer', () => {
  it('raises the log-probability of positive-advantage completions and lowers the negative ones', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config({ lr: 1e-3 }), policy: model });
    const before = await sequenceLogp(model, groups);
    const m = await trainer.step(groups, 0);
    const after = await sequenceLogp(model, groups);
    const up = before.map((b, i) => after[i] - b);
    const pos = up.filter((_, i) => i % 2 === 0);
    const neg = up.filter((_, i) => i % 2 === 1);
    expect(Math.min(...pos)).toBeGreaterThan(0);
    expect(Math.max(...neg)).toBeLessThan(0);
    expect(m.updated).toBe(true);
    expect(m.policyVersion).toBe(1);
    expect(trainer.policyVersion).toBe(1);
    expect(m.lr).toBe(1e-3);
    expect(m.tokens).toBe(groups.flatMap((g) => g.completions).reduce((a, c) => a + c.tokens.length, 0));
    expect(m.ratioMean).toBeCloseTo(1, 3); // on-policy: behaviour log-probs are the learner's
    expect(m.clipRegion).toBe(0);
    expect(m.entropy).toBeGreaterThan(0);
    expect(Number.isNaN(m.kl)).toBe(true); // no reference model, nothing measured
    expect(m.gradNorm).toBeGreaterThan(0);
    expect(m.batch.rewardMean).toBe(0.5);
    expect(m.stalenessMax).toBe(0);
    trainer.dispose();
    model.dispose();
  });

  it('creates no reference model when kl_coef is 0, a frozen copy when it is > 0', () => {
    const model = policy();
    const nVars = model.variables().size;
    let before = tf.memory().numTensors;
    const plain = new GrpoTrainer({ config: config(), policy: model });
    expect(plain.hasReference).toBe(false);
    expect(tf.memory().numTensors - before).toBe(2 * nVars); // the AdamW moments only
    plain.dispose();
    before = tf.memory().numTensors;
    const withKl = new GrpoTrainer({ config: config({ kl_coef: 0.1 }), policy: model });
    expect(withKl.hasReference).toBe(true);
    expect(tf.memory().numTensors - before).toBeGreaterThanOrEqual(3 * nVars);
    withKl.dispose();
    expect(() => new GrpoTrainer({ config: config(), policy: model, reference: model })).toThrow(/kl_coef is 0/);
    model.dispose();
  });

  it('measures the KL to the reference and keeps it finite and >= 0', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config({ kl_coef: 0.1, lr: 1e-2 }), policy: model });
    const first = await trainer.step(groups, 0);
    expect(first.kl).toBeCloseTo(0, 5); // policy == reference before the first update
    const second = await trainer.step(groups, 1);
    expect(second.kl).toBeGreaterThan(0);
    expect(second.stalenessMax).toBe(1); // the groups were sampled at version 0, the learner is at 1
    trainer.dispose();
    model.dispose();
  });

  it('holds a bfloat16 reference when reference_dtype asks, with a KL near the float32 one', async () => {
    const kls: number[] = [];
    for (const reference_dtype of ['float32', 'bfloat16'] as const) {
      const model = policy();
      const trainer = new GrpoTrainer({ config: config({ kl_coef: 0.1, lr: 1e-2, reference_dtype }), policy: model });
      await trainer.step(groups, 0);
      kls.push((await trainer.step(groups, 1)).kl);
      trainer.dispose();
      model.dispose();
    }
    expect(kls[1]).toBeGreaterThan(0);
    expect(Math.abs(kls[1] - kls[0])).toBeLessThan(0.01 + 0.1 * kls[0]); // bf16 rounding of the reference only
  });

  it('recomputes oldLogp for later inner epochs from the policy before the update', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config({ num_iterations: 2, lr: 2e-4 }), policy: model });
    // workers' log-probs 0.5 nats lower than the learner's: a stale behaviour policy
    const stale = groups.map((g) => ({ ...g, completions: g.completions.map((c) => ({ ...c, logprobs: c.logprobs.map((x) => x - 0.5) })) }));
    const m = await trainer.step(stale, 0);
    expect(m.epochs).toHaveLength(2);
    expect(m.epochs[0].ratioMean).toBeCloseTo(Math.exp(0.5), 3);
    expect(Math.abs(m.epochs[1].ratioMean - 1)).toBeLessThan(0.05);
    expect(m.epochs[1].ratioMean).not.toBe(1);
    expect(trainer.optimizerSteps).toBe(2);
    expect(trainer.policyVersion).toBe(1); // one published version per step
    trainer.dispose();
    model.dispose();
  });

  it('gives the same update with micro-batches and gradient accumulation (dapo)', async () => {
    const runs = [await trainFresh({ micro_batch_size: 12, loss_type: 'dapo', grad_clip: 0 }, 1), await trainFresh({ micro_batch_size: 5, loss_type: 'dapo', grad_clip: 0 }, 1)];
    const metrics = runs.map((r) => r.metrics);
    expect(maxDiff(runs[0].weights, runs[1].weights)).toBeLessThan(1e-6);
    // the loss and the gradient norm are those of one pass over the whole batch
    expect(metrics[1].loss).toBeCloseTo(metrics[0].loss, 6);
    expect(metrics[1].gradNorm / metrics[0].gradNorm).toBeCloseTo(1, 5);
    expect(metrics[1].entropy).toBeCloseTo(metrics[0].entropy, 5);
  });

  it('runs each shared prompt once and updates as the whole-row forward does', async () => {
    const opts = batchOptionsFromConfig(config(), modelConfig, {});
    expect(buildStepBatch(groups, opts).microBatches[0].prefix?.rows.length).toBe(PROMPTS.length); // 3 prompts for 12 rows
    // gradient checkpointing recomputes whole rows, so it is the whole-row forward here
    const runs = [await trainFresh({ gradient_checkpointing: false, kl_coef: 0.04, num_iterations: 2 }, 2), await trainFresh({ gradient_checkpointing: true, kl_coef: 0.04, num_iterations: 2 }, 2)];
    const metrics = runs.map((r) => r.metrics);
    expect(maxDiff(runs[0].weights, runs[1].weights)).toBeLessThan(1e-5);
    expect(metrics[0].loss).toBeCloseTo(metrics[1].loss, 5);
    expect(metrics[0].kl).toBeGreaterThan(0);
    expect(metrics[0].kl).toBeCloseTo(metrics[1].kl, 6);
    expect(metrics[0].entropy).toBeCloseTo(metrics[1].entropy, 5);
  });

  it('skips the update when nothing is left to train on', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config({ dynamic_sampling: true }), policy: model });
    const flat = groups.map((g) => ({ ...g, completions: g.completions.map((c) => ({ ...c, rewards: { r: 1 } })) }));
    const m = await trainer.step(flat, 0);
    expect(m.updated).toBe(false);
    expect(m.policyVersion).toBe(0);
    expect(m.batch.droppedGroups).toBe(3);
    expect(trainer.optimizerSteps).toBe(0);
    trainer.dispose();
    model.dispose();
  });

  it('passes the optimizer state through for checkpoints', async () => {
    const model = policy();
    const a = new GrpoTrainer({ config: config(), policy: model });
    await a.step(groups, 0);
    const state = await a.exportOptimizerState();
    const b = new GrpoTrainer({ config: config(), policy: model, policyVersion: 1 });
    b.importOptimizerState(state);
    expect(b.optimizerSteps).toBe(1);
    expect(b.policyVersion).toBe(1);
    const again = await b.exportOptimizerState();
    for (const [name, t] of state) expect(Array.from(again.get(name)!.data)).toEqual(Array.from(t.data));
    a.dispose();
    b.dispose();
    model.dispose();
  });

  it('leaks no tensor across steps (reference, inner epochs and micro-batches on)', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config({ kl_coef: 0.05, num_iterations: 2, micro_batch_size: 5, entropy_coef: 0.01 }), policy: model });
    await trainer.step(groups, 0); // warm-up: rope tables and the like are built once
    const before = tf.memory().numTensors;
    for (let s = 1; s <= 3; s++) await trainer.step(groups, s);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    model.dispose();
  });

  it('rejects malformed groups before touching the weights', async () => {
    const model = policy();
    const trainer = new GrpoTrainer({ config: config(), policy: model });
    const partial = [{ ...groups[0], completions: groups[0].completions.slice(1) }];
    const err = await trainer.step(partial, 0).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_BAD_ROLLOUT')).toBe(true);
    expect(trainer.optimizerSteps).toBe(0);
    trainer.dispose();
    model.dispose();
  });
});

describe('accumulateGradients', () => {
  /** Gradients of the whole batch in micro-batches of `micro` (weights per loss type). */
  async function gradients(model: LlamaModel, lossType: LossType, micro: number, gs = groups): Promise<Map<string, tf.Tensor>> {
    const c = config({ loss_type: lossType, micro_batch_size: micro, kl_coef: 0.05, entropy_coef: 0.01 });
    const batch = buildStepBatch(gs, batchOptionsFromConfig(c, model.config, {}));
    const tensors: MicroBatchTensors[] = batch.microBatches.map(microBatchTensors);
    const refLogp = tensors.map((t) => tf.sub(t.oldLogp, 0.1).mul(t.mask) as tf.Tensor2D);
    const K = tensors.length;
    const weights = batch.microBatches.map((mb) => ACCUMULATION_WEIGHTS[lossType](mb.size, batch.completions, K));
    const loss = { ...lossOptionsFromConfig(c), ...(lossType === 'dapo' ? { numItemsInBatch: batch.trainTokens } : {}) };
    const out = await accumulateGradients(model, {
      microBatches: tensors,
      oldLogp: tensors.map((t) => t.oldLogp),
      refLogp,
      weights,
      loss,
      temperature: TEMPERATURE,
      keepLogp: false,
    });
    tf.dispose([...out.metrics, ...refLogp, ...tensors.flatMap((t) => [t.ids, t.mask, t.oldLogp])]);
    return out.grads;
  }

  it('equals one pass over the whole batch for dapo, grpo and dr_grpo (an unequal last micro-batch included)', async () => {
    const model = policy();
    for (const lossType of ['dapo', 'grpo', 'dr_grpo'] as const) {
      const whole = await gradients(model, lossType, 12);
      const split = await gradients(model, lossType, 5); // 5 + 5 + 2
      const { diff, scale } = maxAbsDiff(whole, split);
      expect(scale).toBeGreaterThan(0);
      expect(diff / scale).toBeLessThan(1e-5);
      tf.dispose([...whole.values(), ...split.values()]);
    }
    model.dispose();
  });

  it('gives the event loop a turn between micro-batches (sockets stay served during a long step)', async () => {
    const model = policy();
    let turns = 0;
    let ticking = true;
    const tick = (): void => {
      turns += 1;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const split = await gradients(model, 'dapo', 5); // 3 micro-batches: 5 + 5 + 2
    ticking = false;
    expect(turns).toBeGreaterThanOrEqual(2);
    tf.dispose([...split.values()]);
    model.dispose();
  });

  it('averages the micro-batch token means for bnpo', async () => {
    const model = policy();
    const split = await gradients(model, 'bnpo', GROUP); // one group per micro-batch
    // each group alone: its own token mean (scale 'group' advantages do not depend on the others)
    const alone: Map<string, tf.Tensor>[] = [];
    for (const g of groups) alone.push(await gradients(model, 'bnpo', GROUP, [g]));
    const mean = new Map([...split.keys()].map((name) => [name, tf.addN(alone.map((a) => a.get(name)!)).div(alone.length)]));
    const { diff, scale } = maxAbsDiff(mean, split);
    expect(scale).toBeGreaterThan(0);
    expect(diff / scale).toBeLessThan(1e-5);
    tf.dispose([...split.values(), ...mean.values(), ...alone.flatMap((a) => [...a.values()])]);
    model.dispose();
  });
});
