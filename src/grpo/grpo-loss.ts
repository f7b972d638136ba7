/**
 * The GRPO policy loss on [B, T] tensors of per-token log-probabilities (B completions, T tokens):
 *
 *   rho      = exp(logp - oldLogp)                         importanceLevel 'token'  [B, T]
 *            = exp(sum_t (logp - oldLogp) M / max(sum_t M, 1))   'sequence' (GSPO)  [B, 1]
 *   surr     = -min(rho A, clip(rho, 1 - epsilonLow, 1 + epsilonHigh) A)
 *   L        = surr + beta * kl_k3(logp, refLogp) - entropyCoef * entropy          [B, T]
 *   loss     = LOSS_REDUCERS[lossType](L, M)                                        scalar
 *
 * Gradients flow through `logp` only (and through `entropy` when the caller's entropy carries
 * them); oldLogp, refLogp, advantages and mask are stop-gradient. All math runs in one tf.tidy;
 * the caller owns the returned `loss` and `metrics` and reads them with readLossMetrics (one
 * awaited read). docs/objective.md has the formulas, defaults and reasons.
 */
import { tf } from '../engine/tf.js';
import type { Scalar, Tensor, Tensor1D, Tensor2D } from '../engine/tf.js';
import {
  GrpoErrorCode,
  checkChoice,
  checkInt,
  checkKeys,
  checkNumber,
  checkPositive,
  describe,
  fail,
  shapeStr,
} from './check.js';
import { k3Kl } from './kl.js';
import { resolveLossReducer, type LossReducer, type LossType } from './losses.js';
import { stopGradient } from './stop-gradient.js';

export const IMPORTANCE_LEVELS = ['token', 'sequence'] as const;
export type ImportanceLevel = (typeof IMPORTANCE_LEVELS)[number];

export interface GrpoLossInputs {
  /** [B, T] log pi_theta of each completion token under the policy being trained. */
  logp: Tensor2D;
  /** [B, T] log-probs under the policy that sampled the tokens; default: logp (on-policy). */
  oldLogp?: Tensor2D;
  /** [B, T] log-probs under the frozen reference policy; needed only when beta > 0. */
  refLogp?: Tensor2D;
  /** [B] one advantage per completion (from groupAdvantages). */
  advantages: Tensor1D | Float32Array | Float64Array | readonly number[];
  /** [B, T] 1 for completion tokens, 0 for padding (float, int or bool). */
  mask: Tensor2D;
  /** [B, T] per-token entropy of the policy (nats): for the bonus and the metric. */
  entropy?: Tensor2D;
}

export interface GrpoLossOptions {
  /** Lower clip: ratios below 1 - epsilonLow stop pushing down; default 0.2 (PPO's value). */
  epsilonLow?: number;
  /** Upper clip; default epsilonLow. DAPO's clip-higher uses 0.28 with epsilonLow 0.2. */
  epsilonHigh?: number;
  /** KL coefficient; default 0: no reference model needed (TRL, DAPO and Dr. GRPO default). */
  beta?: number;
  /** 'token' (GRPO) or 'sequence' (GSPO: one ratio per completion); default 'token'. */
  importanceLevel?: ImportanceLevel;
  /** Normalisation (losses.ts) or a caller's reducer; default 'grpo' (the paper's objective). */
  lossType?: LossType | LossReducer;
  /** dr_grpo: generation limit in tokens. */
  maxCompletionLength?: number;
  /** dapo: completion tokens of the whole generation batch (all micro-batches). */
  numItemsInBatch?: number;
  /** Entropy bonus coefficient (positive = reward entropy); default 0. */
  entropyCoef?: number;
  /**
   * Reject NaN/infinite advantages given as a tensor, at the cost of reading B floats to the
   * host (a sync point on GPU backends); default true. Host arrays are always checked (free).
   */
  checkAdvantages?: boolean;
}

export interface GrpoLossResult {
  /** Scalar loss, on the gradient tape of `logp`. */
  loss: Scalar;
  /** [LOSS_METRIC_NAMES.length] packed metrics (metrics.ts); read with readLossMetrics. */
  metrics: Tensor1D;
}

export const GRPO_LOSS_DEFAULTS = Object.freeze({
  epsilonLow: 0.2,
  beta: 0,
  importanceLevel: 'token' as ImportanceLevel,
  lossType: 'grpo' as LossType,
  entropyCoef: 0,
  checkAdvantages: true,
});

const KEYS = [
  'epsilonLow',
  'epsilonHigh',
  'beta',
  'importanceLevel',
  'lossType',
  'maxCompletionLength',
  'numItemsInBatch',
  'entropyCoef',
  'checkAdvantages',
] as const;
const FN = 'grpoLoss';

interface Resolved {
  epsilonLow: number;
  epsilonHigh: number;
  beta: number;
  importanceLevel: ImportanceLevel;
  reducer: LossReducer;
  maxCompletionLength?: number;
  numItemsInBatch?: number;
  entropyCoef: number;
  checkAdvantages: boolean;
}

function resolveOptions(opts: GrpoLossOptions): Resolved {
  checkKeys(FN, opts, KEYS);
  const epsilonLow = checkNumber(FN, 'epsilonLow', opts.epsilonLow ?? GRPO_LOSS_DEFAULTS.epsilonLow, 0, 1);
  const checkAdvantages = opts.checkAdvantages ?? GRPO_LOSS_DEFAULTS.checkAdvantages;
  if (typeof checkAdvantages !== 'boolean') {
    fail(GrpoErrorCode.BadOption, `${FN}: checkAdvantages must be a boolean, got ${describe(checkAdvantages)}`);
  }
  const { maxCompletionLength, numItemsInBatch } = opts;
  return {
    epsilonLow,
    epsilonHigh: checkNumber(FN, 'epsilonHigh', opts.epsilonHigh ?? epsilonLow, 0),
    beta: checkNumber(FN, 'beta', opts.beta ?? GRPO_LOSS_DEFAULTS.beta, 0),
    importanceLevel: checkChoice(
      FN,
      'importanceLevel',
      opts.importanceLevel ?? GRPO_LOSS_DEFAULTS.importanceLevel,
      IMPORTANCE_LEVELS,
    ),
    reducer: resolveLossReducer(opts.lossType ?? GRPO_LOSS_DEFAULTS.lossType),
    maxCompletionLength:
      maxCompletionLength === undefined ? undefined : checkInt(FN, 'maxCompletionLength', maxCompletionLength, 1),
    numItemsInBatch:
      numItemsInBatch === undefined ? undefined : checkPositive(FN, 'numItemsInBatch', numItemsInBatch),
    entropyCoef: checkNumber(FN, 'entropyCoef', opts.entropyCoef ?? GRPO_LOSS_DEFAULTS.entropyCoef),
    checkAdvantages,
  };
}

function checkMatrix(name: string, t: unknown, shape: readonly number[] | null): Tensor2D {
  if (!(t instanceof tf.Tensor)) {
    fail(GrpoErrorCode.BadShape, `${FN}: ${name} must be a [B, T] tensor, got ${describe(t)}`);
  }
  if (t.rank !== 2 || (shape !== null && (t.shape[0] !== shape[0] || t.shape[1] !== shape[1]))) {
    const want = shape === null ? '[B, T]' : shapeStr(shape);
    fail(GrpoErrorCode.BadShape, `${FN}: ${name} has shape ${shapeStr(t.shape)}, expected ${want} like logp`);
  }
  return t as Tensor2D;
}

function checkFiniteAdvantages(values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      fail(
        GrpoErrorCode.BadAdvantage,
        `${FN}: advantage ${i} is ${describe(values[i])}; advantages must be finite (groupAdvantages never gives NaN)`,
      );
    }
  }
}

/** Checks shapes and the options that depend on the inputs; host advantages come back as float32. */
function checkInputs(
  inputs: GrpoLossInputs,
  o: Resolved,
): { B: number; T: number; hostAdvantages: Float32Array | null } {
  if (inputs === null || typeof inputs !== 'object') {
    fail(GrpoErrorCode.BadShape, `${FN}: inputs must be an object of tensors`);
  }
  const logp = checkMatrix('logp', inputs.logp, null);
  const [B, T] = logp.shape;
  if (B === 0 || T === 0) {
    fail(GrpoErrorCode.BadShape, `${FN}: logp has shape ${shapeStr(logp.shape)}; need at least one row and one token`);
  }
  if (inputs.oldLogp !== undefined) checkMatrix('oldLogp', inputs.oldLogp, logp.shape);
  if (inputs.refLogp !== undefined) checkMatrix('refLogp', inputs.refLogp, logp.shape);
  if (inputs.entropy !== undefined) checkMatrix('entropy', inputs.entropy, logp.shape);
  checkMatrix('mask', inputs.mask, logp.shape);
  if (o.beta > 0 && inputs.refLogp === undefined) {
    fail(GrpoErrorCode.BadOption, `${FN}: beta ${o.beta} > 0 needs refLogp; pass the reference log-probs or beta 0`);
  }
  if (o.entropyCoef !== 0 && inputs.entropy === undefined) {
    fail(
      GrpoErrorCode.BadOption,
      `${FN}: entropyCoef ${o.entropyCoef} needs the entropy input [B, T]; pass it or set entropyCoef 0`,
    );
  }
  const adv = inputs.advantages;
  if (adv instanceof tf.Tensor) {
    if (adv.rank !== 1 || adv.shape[0] !== B) {
      fail(
        GrpoErrorCode.BadShape,
        `${FN}: advantages has shape ${shapeStr(adv.shape)}, expected [${B}] (one per row of logp)`,
      );
    }
    if (o.checkAdvantages) checkFiniteAdvantages(adv.dataSync());
    return { B, T, hostAdvantages: null };
  }
  if (!Array.isArray(adv) && !(adv instanceof Float32Array) && !(adv instanceof Float64Array)) {
    fail(GrpoErrorCode.BadShape, `${FN}: advantages must be a [B] tensor or array, got ${describe(adv)}`);
  }
  if (adv.length !== B) {
    fail(GrpoErrorCode.BadShape, `${FN}: ${adv.length} advantages for ${B} rows of logp; give one per completion`);
  }
  checkFiniteAdvantages(adv);
  return { B, T, hostAdvantages: Float32Array.from(adv) };
}

/**
 * The GRPO loss and its metrics. Throws GRPO_ERR_BAD_SHAPE (shapes), GRPO_ERR_BAD_ADVANTAGE
 * (NaN/infinite advantage) or GRPO_ERR_BAD_OPTION (options) before any tensor is created; the
 * loss variant's own checks (dr_grpo's maxCompletionLength, dapo's numItemsInBatch) throw from
 * inside the tidy, which frees what it made.
 */
export function grpoLoss(inputs: GrpoLossInputs, opts: GrpoLossOptions = {}): GrpoLossResult {
  const o = resolveOptions(opts);
  const { B, T, hostAdvantages } = checkInputs(inputs, o);
  const ctx = { maxCompletionLength: o.maxCompletionLength, numItemsInBatch: o.numItemsInBatch };
  const lo = 1 - o.epsilonLow;
  const hi = 1 + o.epsilonHigh;
  return tf.tidy(() => {
    const logp = inputs.logp; // [B, T], the only input differentiated
    const mask = stopGradient(tf.cast(inputs.mask, 'float32')) as Tensor2D; // [B, T]
    const old = stopGradient(inputs.oldLogp ?? logp); // [B, T]
    const advVec = hostAdvantages ? tf.tensor1d(hostAdvantages) : stopGradient(inputs.advantages as Tensor1D);
    const adv = tf.reshape(advVec, [B, 1]); // [B, 1]

    const logRatio = tf.sub(logp, old); // [B, T]
    const tokensPerSeq = tf.sum(mask, 1, true); // [B, 1]
    const logImportance =
      o.importanceLevel === 'token'
        ? logRatio // [B, T]
        : tf.div(tf.sum(tf.mul(logRatio, mask), 1, true), tf.maximum(tokensPerSeq, 1)); // [B, 1]
    const ratio = tf.exp(logImportance);
    const clipped = tf.clipByValue(ratio, lo, hi);
    // minimum() sends the gradient to its first argument on ties (ratio inside the clip range)
    let surrogate: Tensor = tf.neg(tf.minimum(tf.mul(ratio, adv), tf.mul(clipped, adv)));
    if (o.importanceLevel === 'sequence') surrogate = tf.broadcastTo(surrogate, [B, T]);

    const kl = inputs.refLogp !== undefined ? k3Kl(logp, inputs.refLogp) : null; // [B, T]
    let perToken = surrogate; // [B, T]
    if (o.beta > 0 && kl !== null) perToken = tf.add(perToken, tf.mul(kl, o.beta));
    if (o.entropyCoef !== 0 && inputs.entropy !== undefined) {
      perToken = tf.sub(perToken, tf.mul(inputs.entropy, o.entropyCoef));
    }

    const loss = o.reducer(perToken as Tensor2D, mask, ctx);
    if (!(loss instanceof tf.Tensor) || loss.rank !== 0) {
      const got = loss instanceof tf.Tensor ? shapeStr(loss.shape) : describe(loss);
      fail(GrpoErrorCode.BadShape, `${FN}: the loss reducer returned ${got}, expected a scalar tensor`);
    }
    const policyLoss = perToken === surrogate ? loss : o.reducer(surrogate as Tensor2D, mask, ctx);

    // --- metrics (no gradient is taken of these) ---
    const numTokens = tf.sum(mask);
    const tokenMean = (x: Tensor): Tensor => tf.div(tf.sum(tf.mul(x, mask)), tf.maximum(numTokens, 1));
    const hasTokens = tf.cast(tf.greater(tokensPerSeq, 0), 'float32'); // [B, 1]
    const seqMean = (x: Tensor): Tensor => tf.div(tf.sum(tf.mul(x, hasTokens)), tf.maximum(tf.sum(hasTokens), 1));
    const shareMean = o.importanceLevel === 'token' ? tokenMean : seqMean;
    const low = tf.cast(tf.logicalAnd(tf.less(ratio, lo), tf.less(adv, 0)), 'float32');
    const high = tf.cast(tf.logicalAnd(tf.greater(ratio, hi), tf.greater(adv, 0)), 'float32');
    const nan = tf.scalar(NaN);
    const metrics = tf.stack([
      loss,
      policyLoss,
      kl !== null ? tokenMean(kl) : nan,
      inputs.entropy !== undefined ? tokenMean(inputs.entropy) : nan,
      shareMean(low),
      shareMean(high),
      shareMean(tf.maximum(low, high)),
      shareMean(ratio),
      numTokens,
    ]) as Tensor1D;
    return { loss, metrics };
  });
}
