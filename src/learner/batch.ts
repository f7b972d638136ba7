/**
 * The learner's step batch: admitted GroupRollouts -> rewards shaped and weighted ->
 * group-relative advantages over the WHOLE step batch -> micro-batches of host arrays laid out
 * for LlamaModel.tokenLogProbs and grpoLoss. Host only; microBatchTensors() makes the tensors.
 *
 * One micro-batch of B completions and T positions. Row b is prompt (P_b tokens) + completion
 * (C_b tokens). Every prompt ends at column P = max P_b (LEFT-padded) and every completion starts
 * there (RIGHT-padded), T = P + max C_b:
 *
 *   ids        [B, T]     int32  pad .. pad | prompt | completion | pad .. pad
 *   leftPad    [B]               P - P_b. Passed as tokenLogProbs(ids, { leftPad }), which masks
 *                                the padded keys and starts rotary positions at 0 on the row's
 *                                first real token: how the sampler's prefill saw the prompt, so
 *                                the learner's logp equals the workers' behaviour
 *                                log-probabilities (tests/learner/batch.test.ts checks it). The
 *                                right padding follows the completion and, under causal
 *                                attention, changes nothing before it
 *   mask       [B, T - 1] f32    1 at t = P-1 .. P-2+C_b, where logp[b, t] predicts ids[b, t+1],
 *                                a completion token; 0 elsewhere. A truncated completion's whole
 *                                row is 0 under mask_truncated (it still counts for advantages)
 *   oldLogp    [B, T - 1] f32    the workers' behaviour log-probabilities on the completion
 *                                positions, 0 elsewhere (finite, as grpoLoss requires)
 *   allowed    grammar masks     when some completion was sampled under a grammar
 *                                (Completion.allowed): per completion position, the ids its token
 *                                was drawn from, so tokenLogProbs renormalises over the same sets
 *                                the worker's log-probabilities are renormalised over
 *   prefix     shared prompts    the rows of a group share columns [0, P) exactly; when running
 *                                each distinct prompt once skips at least a quarter of the
 *                                positions, tokenLogProbs takes them (model/shared-prefix.ts)
 *   advantages [B]        f32
 *
 * Rewards: each Completion carries `rewards` by function name (null = could not score). A
 * function's weight comes from `rewardWeights` (resolveRewardWeights: task defaults overridden
 * by the config's reward_weights); a name not listed weighs 1, and functions of weight 0 are left
 * out of the totals. With overlong_cache_len > 0, DAPO's overlong penalty joins as one more
 * function, OVERLONG_REWARD, on the completions some weighted function scored.
 * With dynamic_sampling, groups whose totals are all equal are dropped before the advantages are
 * computed (they would carry no gradient, and DAPO leaves them out of the batch).
 */
import type { Config } from '../shared/config.js';
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import {
  filterZeroStdGroups,
  groupAdvantages,
  overlongPenalty,
  type AdvantageScale,
  type RewardsByName,
} from '../grpo/index.js';
import { buildAllowedMask, type AllowedMask } from '../model/allowed-mask.js';
import { findSharedPrefix, type SharedPrefix } from '../model/shared-prefix.js';
import type { LlamaConfig } from '../model/types.js';
import type { Completion, GroupRollout } from '../shared/protocol.js';
import { meanStd, type BatchStats, type CompletionOutcomes } from './step-metrics.js';

/** Name of the overlong-shaping reward column (overlong_cache_len > 0). */
export const OVERLONG_REWARD = 'overlong_penalty';

export interface BatchOptions {
  groupSize: number; // completions per group (config group_size)
  microBatchSize: number; // completions per forward/backward (config micro_batch_size)
  rewardWeights: Readonly<Record<string, number>>; // by reward name; a name not listed weighs 1
  scaleRewards: AdvantageScale; // config scale_rewards
  maskTruncated: boolean; // config mask_truncated
  dynamicSampling: boolean; // config dynamic_sampling
  overlongCacheLen: number; // config overlong_cache_len, tokens; 0 = off
  maxGenLen: number; // config max_gen_len, tokens
  padId: number; // token id written into padding (never attended to)
  vocabSize: number; // token ids must lie in [0, vocabSize)
}

export interface MicroBatch {
  size: number; // B
  length: number; // T
  promptColumns: number; // P: every prompt ends at column P - 1, every completion starts at P
  ids: Int32Array; // [B * T]
  leftPad: Int32Array; // [B]
  mask: Float32Array; // [B * (T - 1)]
  oldLogp: Float32Array; // [B * (T - 1)]
  advantages: Float32Array; // [B]
  tokens: number; // sum of mask
  allowed?: AllowedMask; // grammar masks of the B * (T - 1) positions; absent without a grammar
  prefix?: SharedPrefix; // rows sharing their prompt, when running each prompt once saves enough (see layoutRows)
}

export interface StepBatch {
  microBatches: MicroBatch[];
  completions: number; // rows over all micro-batches
  trainTokens: number; // sum of every mask: dapo's numItemsInBatch
  stats: BatchStats;
  outcomes: CompletionOutcomes; // per completion of `groups`, for the logs
}

export interface MicroBatchTensors {
  ids: tf.Tensor2D; // [B, T] int32
  mask: tf.Tensor2D; // [B, T - 1]
  oldLogp: tf.Tensor2D; // [B, T - 1]
  leftPad: Int32Array; // [B], host: tokenLogProbs reads it on the host
  advantages: Float32Array; // [B], host: grpoLoss takes it as is
  allowed?: AllowedMask; // host: tokenLogProbs builds its tensors
  prefix?: SharedPrefix; // host: the shared prompts, for tokenLogProbs
}

/** The batch options of a run; `rewardWeights` from resolveRewardWeights. */
export function batchOptionsFromConfig(
  config: Config,
  model: LlamaConfig,
  rewardWeights: Readonly<Record<string, number>>,
): BatchOptions {
  return {
    groupSize: config.group_size,
    microBatchSize: config.micro_batch_size,
    rewardWeights,
    scaleRewards: config.scale_rewards,
    maskTruncated: config.mask_truncated,
    dynamicSampling: config.dynamic_sampling,
    overlongCacheLen: config.overlong_cache_len,
    maxGenLen: config.max_gen_len,
    padId: model.pad_token_id ?? 0,
    vocabSize: model.vocab_size,
  };
}

/**
 * Task default weights overridden by the config's `reward_weights`. A config key naming no
 * reward of the task is GRPO_ERR_CONFIG (a typo would otherwise be silently ignored).
 */
export function resolveRewardWeights(
  taskRewards: readonly { name: string; weight: number }[],
  configWeights: Readonly<Record<string, number>>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of taskRewards) out[r.name] = r.weight;
  for (const [name, w] of Object.entries(configWeights)) {
    if (!(name in out)) {
      const known = taskRewards.map((r) => r.name).join(', ');
      throw new GrpoError('GRPO_ERR_CONFIG', `reward_weights names ${name}, which is no reward of the task; use one of ${known}`);
    }
    out[name] = w;
  }
  return out;
}

/** Builds the step batch. Throws GRPO_ERR_BAD_ROLLOUT for a malformed group. */
export function buildStepBatch(groups: readonly GroupRollout[], o: BatchOptions): StepBatch {
  checkOptions(o);
  checkGroups(groups, o);
  const rows: Row[] = groups.flatMap((g) => g.completions.map((c) => ({ prompt: g.promptTokens, c })));
  const rewards = rewardColumns(rows.map((r) => r.c), o);
  const weights = weightsFor(rewards, o);

  // dynamic sampling: keep the groups whose totals differ; advantages over the kept ones only
  let kept = rows.map((_, i) => i);
  let dropped = 0;
  if (o.dynamicSampling && rows.length > 0) {
    const f = filterZeroStdGroups(rewards, o.groupSize, { weights });
    kept = f.keptIndices;
    dropped = f.dropped;
  }
  const advOpts = { scale: o.scaleRewards, weights };
  const all = rows.length > 0 ? groupAdvantages(rewards, o.groupSize, advOpts) : null;
  let adv = all;
  if (kept.length < rows.length) adv = kept.length > 0 ? groupAdvantages(pick(rewards, kept), o.groupSize, advOpts) : null;

  const microBatches: MicroBatch[] = [];
  for (let s = 0; s < kept.length; s += o.microBatchSize) {
    const idx = kept.slice(s, s + o.microBatchSize);
    microBatches.push(layoutRows(idx.map((i) => rows[i]), idx.map((_, j) => adv!.advantages[s + j]), o));
  }
  const trainTokens = microBatches.reduce((a, mb) => a + mb.tokens, 0);
  const outcomes: CompletionOutcomes = { rewards: all?.totals ?? new Float64Array(0), advantages: new Float32Array(rows.length) };
  kept.forEach((row, j) => (outcomes.advantages[row] = adv!.advantages[j]));
  const stats = batchStats(groups, rows.map((r) => r.c), rewards, all, dropped, kept.length, trainTokens);
  const trained = meanStd(adv?.advantages ?? []);
  stats.advantageMean = trained.mean;
  stats.advantageStd = trained.std;
  return { microBatches, completions: kept.length, trainTokens, stats, outcomes };
}

/**
 * Throws what buildStepBatch([group], o) would throw, without laying out rows, searching shared
 * prefixes or computing statistics: the inbox checks every group this way as it arrives (256 a
 * step in the demo), and a group that passes can join any step batch.
 */
export function checkStepGroup(group: GroupRollout, o: BatchOptions): void {
  checkOptions(o);
  checkGroups([group], o);
  const rewards = rewardColumns(group.completions, o);
  groupAdvantages(rewards, o.groupSize, { scale: o.scaleRewards, weights: weightsFor(rewards, o) });
}

function checkOptions(o: BatchOptions): void {
  if (!Number.isInteger(o.microBatchSize) || o.microBatchSize < 1) {
    throw new GrpoError('GRPO_ERR_BAD_OPTION', `micro batch size is ${o.microBatchSize}; it must be an integer >= 1`);
  }
  if (o.overlongCacheLen > o.maxGenLen) {
    throw new GrpoError(
      'GRPO_ERR_BAD_OPTION',
      `overlong_cache_len ${o.overlongCacheLen} exceeds max_gen_len ${o.maxGenLen}; use a window inside it`,
    );
  }
}

/** The tensors of one micro-batch; the caller disposes ids, mask and oldLogp. */
export function microBatchTensors(mb: MicroBatch): MicroBatchTensors {
  const { size: B, length: T } = mb;
  return {
    ids: tf.tensor2d(mb.ids, [B, T], 'int32'),
    mask: tf.tensor2d(mb.mask, [B, T - 1], 'float32'),
    oldLogp: tf.tensor2d(mb.oldLogp, [B, T - 1], 'float32'),
    leftPad: mb.leftPad,
    advantages: mb.advantages,
    ...(mb.allowed ? { allowed: mb.allowed } : {}),
    ...(mb.prefix ? { prefix: mb.prefix } : {}),
  };
}

/** One completion with the prompt it continues. */
interface Row {
  prompt: number[];
  c: Completion;
}

function badRollout(msg: string): GrpoError {
  return new GrpoError('GRPO_ERR_BAD_ROLLOUT', msg);
}

function checkGroups(groups: readonly GroupRollout[], o: BatchOptions): void {
  const ids = new Set<string>();
  const tokenOk = (t: number): boolean => Number.isInteger(t) && t >= 0 && t < o.vocabSize;
  for (const g of groups) {
    const where = `group ${g.groupId}`;
    if (ids.has(g.groupId)) throw badRollout(`${where} appears twice in one step; admit each group once`);
    ids.add(g.groupId);
    if (g.completions.length !== o.groupSize) {
      const n = g.completions.length;
      throw badRollout(`${where} has ${n} completions, group_size is ${o.groupSize}; partial groups are never admitted`);
    }
    if (g.promptTokens.length === 0) {
      throw badRollout(`${where} has an empty prompt; every prompt holds at least one token (e.g. BOS)`);
    }
    if (!g.promptTokens.every(tokenOk)) throw badRollout(`${where}: a prompt token is not an id in [0, ${o.vocabSize})`);
    g.completions.forEach((c, j) => {
      if (c.tokens.length !== c.logprobs.length) {
        const n = `${c.tokens.length} tokens but ${c.logprobs.length} logprobs`;
        throw badRollout(`${where}, completion ${j}: ${n}; need one per token`);
      }
      if (c.tokens.length > o.maxGenLen) {
        throw badRollout(`${where}, completion ${j}: ${c.tokens.length} tokens, max_gen_len is ${o.maxGenLen}`);
      }
      if (!c.tokens.every(tokenOk)) throw badRollout(`${where}, completion ${j}: a token is not an id in [0, ${o.vocabSize})`);
      // a log-probability is <= 0; -Infinity would be a token the sampler could not have drawn
      if (!c.logprobs.every((lp) => Number.isFinite(lp) && lp <= 1e-6)) {
        throw badRollout(`${where}, completion ${j}: logprobs must be finite and <= 0`);
      }
      if (c.allowed !== undefined) checkAllowed(c.allowed, c.tokens, `${where}, completion ${j}`, tokenOk);
    });
  }
}

/** A completion's allowed sets: one per token, each ascending, holding its token. */
function checkAllowed(allowed: readonly (readonly number[] | null)[], tokens: readonly number[], where: string, tokenOk: (t: number) => boolean): void {
  if (allowed.length !== tokens.length) throw badRollout(`${where}: ${allowed.length} allowed sets for ${tokens.length} tokens; need one per token`);
  allowed.forEach((set, t) => {
    if (set === null) return;
    if (!set.every((id, i) => tokenOk(id) && (i === 0 || id > set[i - 1]))) {
      throw badRollout(`${where}: allowed set ${t} must hold ascending token ids`);
    }
    if (!set.includes(tokens[t])) throw badRollout(`${where}: token ${t} (${tokens[t]}) is not in its allowed set`);
  });
}

/** Reward columns by name over all rows (weight-0 functions left out), plus the overlong penalty. */
function rewardColumns(completions: readonly Completion[], o: BatchOptions): Record<string, (number | null)[]> {
  const names = new Set<string>();
  for (const c of completions) for (const name of Object.keys(c.rewards)) names.add(name);
  if (o.overlongCacheLen > 0 && names.has(OVERLONG_REWARD)) {
    throw badRollout(
      `a reward function is named ${OVERLONG_REWARD}, which overlong shaping uses; rename it or set overlong_cache_len 0`,
    );
  }
  const cols: Record<string, (number | null)[]> = {};
  for (const name of [...names].sort()) {
    if ((o.rewardWeights[name] ?? 1) === 0) continue;
    cols[name] = completions.map((c) => c.rewards[name] ?? null);
  }
  if (completions.length > 0 && Object.keys(cols).length === 0) {
    const got = [...names].join(', ') || 'none';
    throw badRollout(`no reward function with a nonzero weight scored these completions (got ${got}); check reward_weights`);
  }
  if (o.overlongCacheLen > 0) {
    const scoredBySome = (i: number): boolean => Object.values(cols).some((col) => col[i] !== null && !Number.isNaN(col[i]));
    cols[OVERLONG_REWARD] = completions.map((c, i) =>
      scoredBySome(i) ? overlongPenalty(c.tokens.length, o.maxGenLen, o.overlongCacheLen) : null,
    );
  }
  return cols;
}

function weightsFor(cols: RewardsByName, o: BatchOptions): Record<string, number> {
  const w: Record<string, number> = {};
  for (const name of Object.keys(cols)) w[name] = name === OVERLONG_REWARD ? 1 : (o.rewardWeights[name] ?? 1);
  return w;
}

function pick(cols: Record<string, (number | null)[]>, idx: readonly number[]): Record<string, (number | null)[]> {
  const out: Record<string, (number | null)[]> = {};
  for (const [name, col] of Object.entries(cols)) out[name] = idx.map((i) => col[i]);
  return out;
}

/** Lays out rows (see the file comment) with their advantages. */
function layoutRows(rows: readonly Row[], advantages: readonly number[], o: BatchOptions): MicroBatch {
  // prompts end at column P (left-padded), completions start there (right-padded): a group's rows
  // then share columns [0, P) exactly, which lets the forward run each prompt once
  const B = rows.length;
  const P = Math.max(1, ...rows.map((r) => r.prompt.length));
  const T = Math.max(2, P + Math.max(0, ...rows.map((r) => r.c.tokens.length)));
  const ids = new Int32Array(B * T).fill(o.padId);
  const leftPad = new Int32Array(B);
  const mask = new Float32Array(B * (T - 1));
  const oldLogp = new Float32Array(B * (T - 1));
  const sets: (readonly number[] | null)[] = new Array(B * (T - 1)).fill(null); // per position
  let tokens = 0;
  rows.forEach(({ prompt, c }, b) => {
    const C = c.tokens.length;
    const pad = P - prompt.length;
    leftPad[b] = pad;
    ids.set(prompt, b * T + pad);
    ids.set(c.tokens, b * T + P);
    const first = b * (T - 1) + P - 1; // position predicting the first completion token
    oldLogp.set(c.logprobs, first);
    c.allowed?.forEach((set, k) => (sets[first + k] = set));
    if (o.maskTruncated && c.finishReason === 'length') return;
    mask.fill(1, first, first + C);
    tokens += C;
  });
  const allowed = buildAllowedMask(sets);
  const mb: MicroBatch = { size: B, length: T, promptColumns: P, ids, leftPad, mask, oldLogp, advantages: Float32Array.from(advantages), tokens, ...(allowed ? { allowed } : {}) };
  if (P < T) {
    const prefix = findSharedPrefix(ids, B, T, P);
    // worth a second pass through the layers only when it skips a quarter of the positions or more
    if ((B - prefix.rows.length) * P >= PREFIX_MIN_SAVING * B * T) mb.prefix = prefix;
  }
  return mb;
}

/** Least share of a micro-batch's positions the shared-prefix forward must skip to be used. */
const PREFIX_MIN_SAVING = 0.25;

function batchStats(
  groups: readonly GroupRollout[],
  completions: readonly Completion[],
  cols: Record<string, (number | null)[]>,
  adv: ReturnType<typeof groupAdvantages> | null,
  droppedGroups: number,
  trained: number,
  trainTokens: number,
): BatchStats {
  const lengths = completions.map((c) => c.tokens.length);
  const rewardFunctions: BatchStats['rewardFunctions'] = {};
  const names = new Set<string>(Object.keys(cols));
  for (const c of completions) for (const name of Object.keys(c.rewards)) names.add(name);
  for (const name of [...names].sort()) {
    const col = cols[name] ?? completions.map((c) => c.rewards[name] ?? null);
    rewardFunctions[name] = meanStd(col.filter((v): v is number => v !== null && !Number.isNaN(v)));
  }
  const n = completions.length;
  return {
    groups: groups.length,
    droppedGroups,
    completions: trained,
    rewardMean: adv?.rewardMean ?? NaN,
    rewardStd: adv?.rewardStd ?? 0,
    rewardFunctions,
    fracRewardZeroStd: adv?.fracRewardZeroStd ?? NaN,
    unscored: adv?.numUnscored ?? 0,
    lengthMean: n > 0 ? lengths.reduce((a, b) => a + b, 0) / n : NaN,
    lengthMin: n > 0 ? Math.min(...lengths) : NaN,
    lengthMax: n > 0 ? Math.max(...lengths) : NaN,
    truncatedShare: n > 0 ? completions.filter((c) => c.finishReason === 'length').length / n : NaN,
    completionTokens: lengths.reduce((a, b) => a + b, 0),
    trainTokens,
    advantageMean: NaN, // set by buildStepBatch from the trained advantages
    advantageStd: 0,
    logprobMean: meanLogprob(completions),
  };
}

/** Mean of every sampled token's behaviour log-probability, nats/token; NaN without tokens. */
function meanLogprob(completions: readonly Completion[]): number {
  let sum = 0;
  let n = 0;
  for (const c of completions) {
    for (const lp of c.logprobs) sum += lp;
    n += c.logprobs.length;
  }
  return n > 0 ? sum / n : NaN;
}
