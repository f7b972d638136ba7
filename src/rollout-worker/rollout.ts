/**
 * The rollout worker's compute step: sample `groupSize` completions for each of several prompts
 * in ONE batched KV-cache sample() call, decode them, score them in the reward pool, and return
 * one GroupRollout (or one failure) per group. No networking: the worker's client leases the
 * groups, swaps weights between calls (never during one, so every group of a call carries the
 * same policyVersion) and sends the results.
 *
 * Batch layout: rows are group-major, group g's completions are rows
 * [g * groupSize_g ... ) in spec order, each row starting from the group's prompt ids
 * ([BOS] + encode(prompt), see src/tasks/encoding.ts). Generation stops at the tokenizer's EOS.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GrpoError, isGrpoError, toGrpoError } from '../shared/errors.js';
import type { LlamaModel } from '../model/llama.js';
import { sample } from '../model/sampling.js';
import type { SampleOptions, SampleResult, Tokenizer } from '../model/types.js';
import type { Completion, GroupRollout, GroupSpec, ProtocolLogger } from '../shared/protocol.js';
import { batchGrammar, decodeCompletion, promptIds } from '../tasks/index.js';
import type { Task } from '../tasks/index.js';
import type { RewardPool, ScoreResult } from './reward-pool.js';
import { epochField } from '../shared/epoch.js';

export interface RolloutSampling {
  temperature: number; // config temperature
  topK: number; // 0 = off
  topP: number; // 1 = off
  maxNewTokens: number; // config max_gen_len
  seed: number; // run seed; each call derives its own sampling seed from it and the group ids
}

export interface RolloutContext {
  model: LlamaModel;
  tokenizer: Tokenizer;
  /** Main-thread copy of the task, for its optional grammar hook (rewards run in the pool). */
  task: Task;
  /**
   * The same task under other options, for groups whose spec carries `taskOptions` (a curriculum
   * level): their rows sample under that task's grammar. Without it such groups use `task`.
   */
  taskFor?: (options: Readonly<Record<string, unknown>>) => Promise<Task>;
  pool: Pick<RewardPool, 'scoreGroups'>;
  sampling: RolloutSampling;
  /** The weights version `model` holds; stamped on every group of the call. */
  policyVersion: number;
  /** Its resume epoch (absent = 0); stamped on every group too, so the learner can refuse another epoch's. */
  epoch?: number;
}

/** A group whose rewards could not be computed (GroupFailedMsg without the leaseId). */
export interface GroupFailure {
  groupId: string;
  code: string;
  message: string;
}

export type GroupOutcome = GroupRollout | GroupFailure;

export interface RolloutTiming {
  sampleSeconds: number; // wall time of the sample() call
  rewardSeconds: number; // wall time of scoring every group (groups are scored concurrently)
  tokensGenerated: number; // completion tokens over all rows, stop tokens included
  completions: number; // rows sampled
}

export interface RolloutBatch {
  /** One per spec, in spec order. */
  outcomes: GroupOutcome[];
  timing: RolloutTiming;
}

export function isGroupFailure(o: GroupOutcome): o is GroupFailure {
  return typeof (o as GroupFailure).code === 'string';
}

/**
 * The sampling seed of one call: FNV-1a (32-bit) over the run seed and the group ids, so a call is
 * reproducible (same seed, same groups, same weights -> same completions) yet no two calls of a
 * run share a seed (group ids are unique per run).
 */
export function rolloutSeed(seed: number, groupIds: readonly string[]): number {
  const text = `${seed}|${groupIds.join('|')}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * Deterministic mode: one sampling call per group, seeded by the group's own seed (the learner's,
 * GroupSpec.seed), so a group's completions are the same whichever worker samples it and whatever
 * else it samples at the same time (a call's rows share batched matmuls and the KV-cache
 * compaction, so only a call of the group alone is independent of the other groups).
 */
async function sampleEachGroup(
  ctx: RolloutContext,
  specs: readonly GroupSpec[],
  rows: number[][],
  grammarRows: Parameters<typeof batchGrammar>[1],
  opts: SampleOptions,
  firstRow: readonly number[],
): Promise<SampleResult> {
  const parts: SampleResult[] = [];
  for (const [g, s] of specs.entries()) {
    const span = [firstRow[g], firstRow[g] + s.groupSize] as const;
    const seed = s.seed ?? rolloutSeed(ctx.sampling.seed, [s.groupId]);
    const allowedTokens = opts.allowedTokens === undefined ? undefined : batchGrammar(ctx.tokenizer, grammarRows.slice(...span));
    parts.push(await sample(ctx.model, rows.slice(...span), { ...opts, seed, allowedTokens }));
  }
  const allowed = parts.every((p) => p.allowed !== undefined) ? parts.flatMap((p) => p.allowed!) : undefined;
  return {
    tokens: parts.flatMap((p) => p.tokens),
    logprobs: parts.flatMap((p) => p.logprobs),
    finishReason: parts.flatMap((p) => p.finishReason),
    ...(allowed !== undefined ? { allowed } : {}),
  };
}

export function checkSpecs(specs: readonly GroupSpec[], policyVersion: number): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_BAD_GROUP_SPEC', msg);
  };
  if (!Number.isInteger(policyVersion) || policyVersion < 0) fail(`policyVersion is ${policyVersion}; it must be an integer >= 0`);
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.groupId)) fail(`group ${s.groupId} appears twice in one rollout call; each group is sampled once per call`);
    seen.add(s.groupId);
    if (!Number.isInteger(s.groupSize) || s.groupSize < 1) fail(`group ${s.groupId} has groupSize ${s.groupSize}; it must be an integer >= 1`);
    if (typeof s.prompt !== 'string') fail(`group ${s.groupId} has no prompt string`);
  }
}

/** The rows `rows` of a batch's sample() result, as a result of their own. */
function pick(r: SampleResult, rows: number[]): SampleResult {
  const out: SampleResult = {
    tokens: rows.map((i) => r.tokens[i]),
    logprobs: rows.map((i) => r.logprobs[i]),
    finishReason: rows.map((i) => r.finishReason[i]),
  };
  if (r.allowed) out.allowed = rows.map((i) => r.allowed![i]);
  return out;
}

/**
 * One group's outcome from its rows' sample() result, their decoded texts and its settled reward
 * call: the GroupRollout, or a GroupFailure when the reward failed after its retries. Anything
 * else (a closed pool, a task that cannot load) concerns every group and is thrown.
 */
export function groupOutcome(
  policyVersion: number,
  s: GroupSpec,
  promptTokens: number[],
  sampled: SampleResult,
  texts: string[],
  result: PromiseSettledResult<ScoreResult>,
  epoch = 0,
): GroupOutcome {
  if (result.status === 'rejected') {
    if (isGrpoError(result.reason, 'GRPO_ERR_REWARD_FAILED')) {
      return { groupId: s.groupId, code: result.reason.code, message: result.reason.message };
    }
    throw result.reason;
  }
  const completions: Completion[] = result.value.rewards.map((rewards, k) => {
    const allowed = sampled.allowed?.[k];
    return {
      tokens: sampled.tokens[k],
      logprobs: sampled.logprobs[k],
      // the sets the logprobs are renormalised over; left out where no step was constrained
      ...(allowed !== undefined && allowed.some((a) => a !== null) ? { allowed } : {}),
      text: texts[k],
      rewards,
      finishReason: sampled.finishReason[k],
    };
  });
  const group: GroupRollout = { groupId: s.groupId, policyVersion, ...epochField(epoch), promptTokens, completions };
  if (result.value.errors.length > 0) group.rewardErrors = result.value.errors;
  return group;
}

/** Samples and scores every group of `specs`; reward failures are per group, anything else throws. */
export async function rolloutGroups(ctx: RolloutContext, specs: readonly GroupSpec[]): Promise<RolloutBatch> {
  checkSpecs(specs, ctx.policyVersion);
  const { tokenizer } = ctx;
  const promptTokens = specs.map((s) => promptIds(tokenizer, s.prompt));
  const rows: number[][] = [];
  const firstRow: number[] = []; // index of each group's first row in the batch
  specs.forEach((s, g) => {
    firstRow.push(rows.length);
    for (let k = 0; k < s.groupSize; k++) rows.push(promptTokens[g]);
  });

  // each row samples under the grammar of the task its problem came from (curriculum levels differ)
  const tasks = await Promise.all(specs.map((s) => (s.taskOptions !== undefined && ctx.taskFor ? ctx.taskFor(s.taskOptions) : ctx.task)));
  const grammarRows = specs.flatMap((s, g) => Array.from({ length: s.groupSize }, () => ({ task: tasks[g], prompt: s.prompt })));
  const opts: SampleOptions = {
    maxNewTokens: ctx.sampling.maxNewTokens,
    temperature: ctx.sampling.temperature,
    topK: ctx.sampling.topK,
    topP: ctx.sampling.topP,
    stopTokens: [...tokenizer.stopIds],
    seed: rolloutSeed(ctx.sampling.seed, specs.map((s) => s.groupId)),
    allowedTokens: batchGrammar(tokenizer, grammarRows),
  };
  const t0 = performance.now();
  const sampled = specs.some((s) => s.seed !== undefined)
    ? await sampleEachGroup(ctx, specs, rows, grammarRows, opts, firstRow)
    : await sample(ctx.model, rows, opts); // one batched call: [sum of group sizes] rows
  const sampleSeconds = (performance.now() - t0) / 1000;
  const texts = sampled.tokens.map((ids) => decodeCompletion(tokenizer, ids));

  const t1 = performance.now();
  const scored = await ctx.pool.scoreGroups(
    specs.map((s, g) => texts.slice(firstRow[g], firstRow[g] + s.groupSize).map((completion) => ({ prompt: s.prompt, completion, meta: s.meta }))),
    specs.map((s) => s.groupId),
  );
  const rewardSeconds = (performance.now() - t1) / 1000;

  const outcomes = specs.map((s, g): GroupOutcome => {
    const rows = Array.from({ length: s.groupSize }, (_, k) => firstRow[g] + k);
    return groupOutcome(ctx.policyVersion, s, promptTokens[g], pick(sampled, rows), texts.slice(firstRow[g], firstRow[g] + s.groupSize), scored[g], ctx.epoch);
  });

  const tokensGenerated = sampled.tokens.reduce((n, t) => n + t.length, 0);
  return { outcomes, timing: { sampleSeconds, rewardSeconds, tokensGenerated, completions: rows.length } };
}

const NO_TIMING: RolloutTiming = { sampleSeconds: 0, rewardSeconds: 0, tokensGenerated: 0, completions: 0 };

/**
 * `rollout` (rolloutGroups, or a test's substitute) on `specs`. A call that throws (not a reward
 * failure: those come back per group) is split into one call per group, so a prompt that breaks
 * sampling fails only its own group.
 */
export async function rolloutIsolated(
  rollout: (ctx: RolloutContext, specs: readonly GroupSpec[]) => Promise<RolloutBatch>,
  ctx: RolloutContext,
  specs: readonly GroupSpec[],
  log: ProtocolLogger,
): Promise<RolloutBatch> {
  try {
    return await rollout(ctx, specs);
  } catch (err) {
    const e = toGrpoError(err, 'GRPO_ERR_ROLLOUT');
    if (specs.length === 1) {
      log('error', 'rollout_failed', { group: specs[0].groupId, code: e.code, error: e.message });
      return { outcomes: [{ groupId: specs[0].groupId, code: e.code, message: e.message }], timing: NO_TIMING };
    }
    log('warn', 'rollout_split', { groups: specs.length, code: e.code, error: e.message });
    const outcomes: GroupOutcome[] = [];
    const timing = { ...NO_TIMING };
    for (const s of specs) {
      const one = await rolloutIsolated(rollout, ctx, [s], log);
      outcomes.push(...one.outcomes);
      for (const k of Object.keys(timing) as (keyof RolloutTiming)[]) timing[k] += one.timing[k];
      await yieldToEventLoop();
    }
    return { outcomes, timing };
  }
}
