/**
 * One GRPO learner step on admitted groups, top to bottom:
 *
 *   groups -> buildStepBatch (host: rewards, advantages over the whole batch, micro-batches)
 *   refLogp per micro-batch from the frozen reference (only when kl_coef > 0), once per step
 *   for each of num_iterations inner epochs:
 *     for each micro-batch: logp (+ entropy) on the tape -> grpoLoss * accumulation weight
 *                           -> gradients added into the epoch's sum
 *     clip by global norm -> one AdamW update at this step's learning rate
 *   one awaited host read: every micro-batch's metrics and every epoch's gradient norm
 *
 * Grammar masks: completions sampled under a task grammar carry their allowed sets, and every
 * logp here (policy and reference) is renormalised over them as the workers' were (batch.ts,
 * allowed-mask.ts), so the ratio and the KL are those of the policy under its grammar.
 *
 * oldLogp: the first epoch uses the workers' behaviour log-probabilities, so the ratio corrects
 * for the (at most max_staleness versions) stale policy that sampled. With num_iterations > 1,
 * the later epochs use the learner's own log-probabilities under the policy before this batch's
 * first update (kept from the first epoch's forward pass: no extra forward), as PPO does.
 *
 * The policy version counts published weights: it increases by one per step() that updated the
 * weights, whatever num_iterations is (one AdamW update per inner epoch, one version per step).
 * The learning rate follows the schedule by the step index given to step(); all inner epochs of a
 * step use the same rate.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Config } from '../shared/config.js';
import { memoryLimit } from '../engine/memory-limit.js';
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import { grpoLoss, type GrpoLossOptions, type LossType } from '../grpo/index.js';
import type { LlamaModel } from '../model/llama.js';
import { HalfReference, type ReferenceModel } from '../model/half-reference.js';
import { mixSeed } from '../model/lora-side.js';
import { checkStepFits, type ReferenceStorage } from '../model/memory-estimate.js';
import type { NamedHostTensors } from '../model/types.js';
import type { GroupRollout } from '../shared/protocol.js';
import { AdamW } from '../optim/adamw.js';
import { clipByGlobalNorm } from '../optim/clip.js';
import { learningRate, validateSchedule, type LrSchedule } from '../optim/schedule.js';
import { batchOptionsFromConfig, buildStepBatch, microBatchTensors, type BatchOptions, type MicroBatchTensors } from './batch.js';
import { foldStepMetrics, type EpochMetrics, type StepMetrics } from './step-metrics.js';

/**
 * How micro-batch gradients add up to the step's gradient: each micro-batch's loss is scaled by
 * its weight and the gradients are summed.
 *   dapo     1: every call divides by the tokens of the whole batch, so the sum IS the gradient of
 *            one pass over the whole batch
 *   grpo     B_k / B: the mean over sequences of the whole batch, exactly (an unequal last
 *            micro-batch included); the plain average when micro-batches are equal
 *   dr_grpo  B_k / B: sum / (B * max_gen_len) over the whole batch, exactly
 *   bnpo     1 / K: the token mean of each micro-batch, averaged (as TRL accumulates it)
 */
export const ACCUMULATION_WEIGHTS: Record<LossType, (mbSize: number, batchSize: number, microBatches: number) => number> = {
  dapo: () => 1,
  grpo: (mbSize, batchSize) => mbSize / batchSize,
  dr_grpo: (mbSize, batchSize) => mbSize / batchSize,
  bnpo: (_mbSize, _batchSize, microBatches) => 1 / microBatches,
};

/** Config keys -> grpoLoss options (numItemsInBatch is per step: the batch's train tokens). */
export function lossOptionsFromConfig(c: Config): GrpoLossOptions {
  return {
    epsilonLow: c.clip_ratio,
    epsilonHigh: c.clip_ratio_high ?? c.clip_ratio,
    beta: c.kl_coef,
    importanceLevel: c.importance_level,
    lossType: c.loss_type,
    entropyCoef: c.entropy_coef,
    ...(c.loss_type === 'dr_grpo' ? { maxCompletionLength: c.max_gen_len } : {}),
  };
}

export interface GradientInputs {
  microBatches: readonly MicroBatchTensors[];
  oldLogp: readonly tf.Tensor2D[]; // per micro-batch [B, T-1]
  refLogp: readonly tf.Tensor2D[] | null; // per micro-batch [B, T-1], or null when beta is 0
  weights: readonly number[]; // accumulation weight per micro-batch
  loss: GrpoLossOptions; // numItemsInBatch included for dapo
  temperature: number; // the sampling temperature: logits are divided by it
  keepLogp: boolean; // also return each micro-batch's logp (detached), for later epochs' oldLogp
  checkpoint?: boolean; // gradient checkpointing: recompute each decoder layer in backward
  dropoutSeed?: number; // LoRA dropout (lora_dropout > 0): this epoch's mask seed, mixed with the micro-batch index
}

export interface AccumulatedGradients {
  grads: Map<string, tf.Tensor>; // by HF parameter name: sum_k weight_k * grad(loss_k)
  metrics: tf.Tensor1D[]; // per micro-batch, grpoLoss's packed metrics
  logp: tf.Tensor2D[]; // per micro-batch when keepLogp, else empty
}

/**
 * The weighted sum of the micro-batch gradients of `policy`'s variables. No host read; the
 * caller disposes everything returned. Each micro-batch is synchronous tensor math, so the
 * event loop gets one turn between micro-batches: a step of many micro-batches on a slow
 * backend would otherwise starve the learner's socket (heartbeats, results) and /metrics.
 */
export async function accumulateGradients(policy: LlamaModel, x: GradientInputs): Promise<AccumulatedGradients> {
  const vars = policy.trainableVariables(); // HF (or, with LoRA, PEFT) name -> variable
  const nameOf = new Map([...vars].map(([name, v]) => [v.name, name]));
  const varList = [...vars.values()];
  const grads = new Map<string, tf.Tensor>();
  const metrics: tf.Tensor1D[] = [];
  const logps: tf.Tensor2D[] = [];
  try {
    for (const [k, mb] of x.microBatches.entries()) {
      if (k > 0) await yieldToEventLoop();
      const { value, grads: g } = tf.variableGrads(() => {
        // entropy is always computed: the step's metric, and the bonus when entropy_coef > 0
        const dropoutSeed = x.dropoutSeed === undefined ? undefined : mixSeed(x.dropoutSeed, k);
        // each shared prompt once (shared-prefix.ts), except where layers are recomputed in
        // backward or LoRA dropout draws masks per layer input: those keep the whole-row forward
        const prefix = x.checkpoint || dropoutSeed !== undefined ? undefined : mb.prefix;
        const fwd = { temperature: x.temperature, leftPad: mb.leftPad, withEntropy: true, allowed: mb.allowed, checkpoint: x.checkpoint, dropoutSeed, prefix };
        const { logp, entropy } = policy.tokenLogProbs(mb.ids, fwd); // [B, T-1] each
        if (x.keepLogp) logps.push(tf.keep(tf.clone(logp)));
        const out = grpoLoss(
          { logp, oldLogp: x.oldLogp[k], refLogp: x.refLogp?.[k], advantages: mb.advantages, mask: mb.mask, entropy },
          x.loss,
        );
        metrics.push(tf.keep(out.metrics));
        return out.loss.mul(x.weights[k]);
      }, varList);
      value.dispose();
      for (const [id, grad] of Object.entries(g)) {
        const name = nameOf.get(id)!;
        const prev = grads.get(name);
        if (prev === undefined) grads.set(name, grad);
        else {
          grads.set(name, tf.add(prev, grad));
          tf.dispose([prev, grad]);
        }
      }
    }
  } catch (err) {
    tf.dispose([...grads.values(), ...metrics, ...logps]);
    throw err;
  }
  return { grads, metrics, logp: logps };
}

const NOT_MEASURED: EpochMetrics = Object.freeze({
  loss: NaN,
  policyLoss: NaN,
  kl: NaN,
  entropy: NaN,
  clipLow: NaN,
  clipHigh: NaN,
  clipRegion: NaN,
  ratioMean: NaN,
  gradNorm: NaN,
});

export interface GrpoTrainerOptions {
  config: Config;
  /** The policy, trained in place; owned by the caller. */
  policy: LlamaModel;
  /** Reward weights by name (resolveRewardWeights); a name not listed weighs 1. */
  rewardWeights?: Readonly<Record<string, number>>;
  /**
   * Frozen reference for the KL term, used only when kl_coef > 0 (owned by the caller, e.g. the
   * initial checkpoint on resume). Default then: a frozen copy of the policy as it is now.
   */
  reference?: LlamaModel;
  /** Version of the policy's current weights (resume); default 0. */
  policyVersion?: number;
}

export class GrpoTrainer {
  readonly config: Config;
  readonly policy: LlamaModel;
  private readonly reference: ReferenceModel | null;
  private readonly ownsReference: boolean;
  private readonly optimizer: AdamW;
  private readonly batchOptions: BatchOptions;
  private readonly schedule: LrSchedule;
  private version: number;
  private checkedTokens = 0; // largest micro-batch (B * T) the fit check has passed

  constructor(o: GrpoTrainerOptions) {
    const c = o.config;
    this.config = c;
    this.policy = o.policy;
    if (c.kl_coef === 0 && o.reference !== undefined) {
      throw new GrpoError(
        'GRPO_ERR_BAD_OPTION',
        'a reference model was given but kl_coef is 0; do not load one (it would only cost memory)',
      );
    }
    this.version = o.policyVersion ?? 0;
    if (!Number.isSafeInteger(this.version) || this.version < 0) {
      throw new GrpoError('GRPO_ERR_BAD_OPTION', `policy version is ${o.policyVersion}; it must be an integer >= 0`);
    }
    this.schedule = {
      lr: c.lr,
      schedule: c.lr_schedule,
      warmupSteps: c.warmup_steps,
      totalSteps: c.steps,
      minLrRatio: c.min_lr_ratio,
    };
    validateSchedule(this.schedule);
    this.batchOptions = batchOptionsFromConfig(c, o.policy.config, o.rewardWeights ?? {});
    this.optimizer = new AdamW(o.policy.trainableVariables(), {
      beta1: c.adam_beta1,
      beta2: c.adam_beta2,
      eps: c.adam_eps,
      weightDecay: c.weight_decay,
    });
    this.ownsReference = c.kl_coef > 0 && o.reference === undefined;
    // with LoRA the frozen base is the reference: a view of the policy's own weights, no copy
    const defaultReference = (): ReferenceModel => {
      if (o.policy.getAdapters()) return o.policy.baseView();
      return c.reference_dtype === 'float32' ? o.policy.clone({ trainable: false }) : HalfReference.from(o.policy, c.reference_dtype);
    };
    this.reference = c.kl_coef > 0 ? (o.reference ?? defaultReference()) : null;
  }

  /**
   * GRPO_ERR_MODEL_TOO_LARGE before any tensor math when the largest micro-batch cannot fit
   * (memory-estimate.ts); each new largest shape is checked once.
   */
  private checkFits(microBatches: readonly { size: number; length: number }[]): void {
    for (const mb of microBatches) {
      if (mb.size * mb.length <= this.checkedTokens) continue;
      const limit = memoryLimit();
      const adapters = this.policy.getAdapters(); // LoRA: AdamW state of the adapters only, their side paths in the activations
      const shape = {
        batch: mb.size,
        seq: mb.length,
        checkpoint: this.config.gradient_checkpointing,
        reference: this.referenceStorage(),
        extraGradients: 1, // the micro-batch sum beside a new micro-batch's gradients, and the clipped copy
        hostCopies: 2, // the published weights and the coordinator's latest version (grpo train runs it in-process)
        ...(adapters ? { lora: { r: adapters.spec.r, dropout: adapters.spec.dropout > 0, targets: adapters.targets } } : {}),
      };
      checkStepFits(this.policy.config, shape, limit.bytes, limit.where, limit.engineBytes);
      this.checkedTokens = mb.size * mb.length;
    }
  }

  /** How the frozen reference is held, for the fit check (a LoRA base view costs nothing extra). */
  private referenceStorage(): ReferenceStorage {
    if (this.reference === null || this.policy.getAdapters()) return 'none';
    return this.reference instanceof HalfReference ? 'f16' : 'f32';
  }

  /** Version of the policy's current weights. */
  get policyVersion(): number {
    return this.version;
  }

  /** Whether a reference model is held (only when kl_coef > 0). */
  get hasReference(): boolean {
    return this.reference !== null;
  }

  /** AdamW steps taken (num_iterations per updating step()). */
  get optimizerSteps(): number {
    return this.optimizer.step;
  }

  /**
   * One learner step on the admitted groups (each exactly group_size completions); `stepIndex`
   * (0-based) picks the learning rate. Returns after the step's one host read.
   */
  async step(groups: readonly GroupRollout[], stepIndex: number): Promise<StepMetrics> {
    const t0 = performance.now();
    const c = this.config;
    const lr = learningRate(this.schedule, stepIndex);
    const staleness = groups.map((g) => this.version - g.policyVersion);
    const batch = buildStepBatch(groups, this.batchOptions);
    this.checkFits(batch.microBatches);
    const base = {
      step: stepIndex,
      lr,
      tokens: batch.trainTokens,
      stalenessMean: staleness.length > 0 ? staleness.reduce((a, b) => a + b, 0) / staleness.length : NaN,
      stalenessMax: staleness.length > 0 ? Math.max(...staleness) : NaN,
      batch: batch.stats,
      completions: batch.outcomes,
    };
    if (batch.trainTokens === 0) {
      // nothing to learn from (all dropped or masked): no update, no new version
      const seconds = (performance.now() - t0) / 1000;
      return { ...base, ...NOT_MEASURED, policyVersion: this.version, updated: false, seconds, tokensPerSecond: 0, epochs: [] };
    }

    const K = batch.microBatches.length;
    const weights = batch.microBatches.map((mb) => ACCUMULATION_WEIGHTS[c.loss_type](mb.size, batch.completions, K));
    const loss: GrpoLossOptions = { ...lossOptionsFromConfig(c) };
    if (c.loss_type === 'dapo') loss.numItemsInBatch = batch.trainTokens; // tokens of the whole step batch
    const epochs = c.num_iterations;
    const tensors = batch.microBatches.map(microBatchTensors);
    const owned: tf.Tensor[] = tensors.flatMap((t) => [t.ids, t.mask, t.oldLogp]);
    const rows: tf.Tensor[] = [];
    const norms: tf.Tensor[] = [];
    try {
      const ref = this.reference;
      let refLogp: tf.Tensor2D[] | null = null;
      if (ref !== null) {
        // frozen: computed once per step, reused by every inner epoch
        refLogp = [];
        for (const t of tensors) {
          // under the same grammar masks as the policy: the KL is between the masked distributions
          const r = tf.tidy(() => ref.tokenLogProbs(t.ids, { temperature: c.temperature, leftPad: t.leftPad, allowed: t.allowed, prefix: t.prefix }).logp);
          refLogp.push(r);
          owned.push(r);
        }
      }
      let oldLogp = tensors.map((t) => t.oldLogp);
      for (let e = 0; e < epochs; e++) {
        const keepLogp = e === 0 && epochs > 1;
        // LoRA dropout masks from the run's seed and the AdamW step: deterministic, and a resumed
        // run (optimizer step restored) draws the masks an uninterrupted one would have
        const dropoutSeed = c.lora_dropout > 0 ? mixSeed(c.seed, this.optimizer.step) : undefined;
        const inputs = { microBatches: tensors, oldLogp, refLogp, weights, loss, temperature: c.temperature, keepLogp, checkpoint: c.gradient_checkpointing, dropoutSeed };
        const acc = await accumulateGradients(this.policy, inputs);
        rows.push(...acc.metrics);
        if (keepLogp) {
          owned.push(...acc.logp);
          oldLogp = acc.logp; // the policy before this batch's first update
        }
        let clipped: ReturnType<typeof clipByGlobalNorm<string>>;
        try {
          clipped = clipByGlobalNorm(acc.grads, c.grad_clip); // norm: before clipping
        } finally {
          tf.dispose([...acc.grads.values()]); // freed before the update: one gradient copy beside AdamW's
        }
        norms.push(clipped.norm);
        try {
          this.optimizer.apply(clipped.grads, lr);
        } finally {
          tf.dispose([...clipped.grads.values()]);
        }
      }
      const packed = tf.tidy(() => tf.concat([...rows.map((r) => r.reshape([-1])), ...norms.map((n) => n.reshape([1]))]));
      let values: Float32Array;
      try {
        values = (await packed.data()) as Float32Array; // the step's one device-to-host read
      } finally {
        packed.dispose();
      }
      this.version += 1;
      const { total, epochs: perEpoch } = foldStepMetrics(values, { epochs, weights });
      const seconds = (performance.now() - t0) / 1000;
      return {
        ...base,
        ...total,
        policyVersion: this.version,
        updated: true,
        seconds,
        tokensPerSecond: (batch.trainTokens * epochs) / seconds,
        epochs: perEpoch,
      };
    } finally {
      tf.dispose([...owned, ...rows, ...norms]);
    }
  }

  /** AdamW moments and step (optimizer.safetensors). */
  exportOptimizerState(): Promise<NamedHostTensors> {
    return this.optimizer.exportState();
  }

  /** Restores a state written by exportOptimizerState (resume). */
  importOptimizerState(state: NamedHostTensors): void {
    this.optimizer.importState(state);
  }

  /** Frees the optimizer state and the reference model when this trainer made it; not the policy. */
  dispose(): void {
    this.optimizer.dispose();
    if (this.ownsReference) this.reference?.dispose();
  }
}
