/**
 * Continuous batching for the rollout worker: leased groups stream through a StreamSampler (a
 * fixed pool of native KV-cache rows) instead of being sampled in fixed batches. When a group's
 * rows have all ended, its rows start the next waiting group at once, and the finished group is
 * scored (in the reward pool, concurrently with further sampling, with the others that ended
 * since the last yield) and reported on its own, so no row waits for the longest completion of a
 * batch and no group waits for a batch to end.
 *
 * The stream runs on one weight snapshot (the policy version of `ctx`): `source.next()` returns
 * null once new weights, a new RunSpec or stop are pending, and the stream then drains its live
 * groups and returns, so every group still carries the version that sampled it. It yields to the
 * event loop every `yieldMs` of sampling so heartbeats, leases and weights are handled meanwhile.
 *
 * A group sampled here gets its GroupSpec.seed (deterministic mode) or else rolloutSeed(seed,
 * [groupId]), so its completions depend only on that seed and the weights, never on what it
 * shared the pool with.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { toGrpoError } from '../shared/errors.js';
import type { GroupSpec } from '../shared/protocol.js';
import { StreamSampler, type StreamJob } from '../model/stream-sampler.js';
import type { SampleResult } from '../model/types.js';
import { batchGrammar, decodeCompletion, promptIds } from '../tasks/index.js';
import { checkSpecs, groupOutcome, rolloutSeed, type GroupOutcome, type RolloutContext } from './rollout.js';
import type { ScoreResult } from './reward-pool.js';

/** Ended groups scored as soon as this many are waiting, before the next yield. */
export const SCORE_BATCH_GROUPS = 64;

export interface StreamSource<T extends { spec: GroupSpec }> {
  /** The next group to sample, or null: none waiting, or the stream must drain (see above). */
  next(): T | null;
  /** A group's outcome, once scored (or failed); `tokens` = its completion tokens. */
  done(item: T, outcome: GroupOutcome, tokens: number): void;
}

export interface StreamStats {
  groups: number; // groups reported through done()
  completions: number;
  tokensGenerated: number;
  sampleSeconds: number; // wall time inside tick(), summed
  rewardSeconds: number; // wall time of each scoring call (the groups ended since the last), summed (overlaps sampling)
  rows: number; // rows of the pool
  /** Groups taken but not sampled here (too large for the pool, or in flight when sampling threw): the caller batches them. */
  leftover: unknown[];
  error?: string; // why sampling stopped early, when it threw
}

/**
 * Streams groups from `source` until it runs dry and every admitted group is reported. `rows` is
 * the pool size (at least the first group's size); positions per row come from the first
 * group's prompt (twice its length, plus max new tokens, within the model's limit).
 */
export async function streamGroups<T extends { spec: GroupSpec }>(
  ctx: RolloutContext,
  rows: number,
  source: StreamSource<T>,
  yieldMs = 20,
): Promise<StreamStats & { leftover: T[] }> {
  const stats: StreamStats & { leftover: T[] } = { groups: 0, completions: 0, tokensGenerated: 0, sampleSeconds: 0, rewardSeconds: 0, rows: 0, leftover: [] };
  const first = source.next();
  if (first === null) return stats;
  const { tokenizer, sampling } = ctx;
  const limit = ctx.model.config.max_position_embeddings;
  const maxLength = Math.min(limit, 2 * promptIds(tokenizer, first.spec.prompt).length + sampling.maxNewTokens);
  stats.rows = Math.max(rows, first.spec.groupSize);
  let sampler: StreamSampler<T>;
  try {
    sampler = await StreamSampler.start<T>(ctx.model, stats.rows, maxLength, {
      maxNewTokens: sampling.maxNewTokens,
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      stopTokens: [...tokenizer.stopIds],
    });
  } catch (err) {
    stats.error = toGrpoError(err, 'GRPO_ERR_ROLLOUT').message;
    stats.leftover.push(first);
    return stats;
  }
  const inFlight = new Set<T>();
  const scoring: Promise<void>[] = [];
  const jobOf = async (item: T): Promise<StreamJob<T>> => {
    const s = item.spec;
    checkSpecs([s], ctx.policyVersion);
    const task = s.taskOptions !== undefined && ctx.taskFor ? await ctx.taskFor(s.taskOptions) : ctx.task;
    const grammar = batchGrammar(tokenizer, Array.from({ length: s.groupSize }, () => ({ task, prompt: s.prompt })));
    const job: StreamJob<T> = { key: item, prompt: promptIds(tokenizer, s.prompt), n: s.groupSize, seed: s.seed ?? rolloutSeed(sampling.seed, [s.groupId]) }; // deterministic mode: the learner's per-group seed
    if (grammar) job.allowedTokens = grammar;
    return job;
  };
  let pulled: T | null = first; // taken from the source, its job not yet built
  let held: StreamJob<T> | null = null; // built, waiting for rows
  let draining = false; // a group did not fit: admit nothing more, hand it back after the drain
  let lastYield = performance.now();
  // Groups whose rows have all ended, not yet handed to the reward pool. They are scored together
  // at each yield (every yieldMs of sampling) or once SCORE_BATCH_GROUPS have ended: one reward
  // task per thread for all of them, where a task per group cost the sampling thread more than
  // the rewards did (a message each way per task).
  let ended: { key: T; result: SampleResult; texts: string[]; tokens: number }[] = [];
  const scoreEnded = (): void => {
    if (ended.length === 0) return;
    const done = ended;
    ended = [];
    const t1 = performance.now();
    const settled = ctx.pool.scoreGroups(
      done.map(({ key, texts }) => texts.map((completion) => ({ prompt: key.spec.prompt, completion, meta: key.spec.meta }))),
      done.map(({ key }) => key.spec.groupId),
    );
    scoring.push(
      settled
        .catch((reason: unknown) => done.map((): PromiseSettledResult<ScoreResult> => ({ status: 'rejected', reason })))
        .then((results) => {
          stats.rewardSeconds += (performance.now() - t1) / 1000;
          results.forEach((r, j) => {
            const { key, result, texts, tokens } = done[j];
            const s = key.spec;
            stats.groups += 1;
            let outcome: GroupOutcome;
            try {
              outcome = groupOutcome(ctx.policyVersion, s, promptIds(tokenizer, s.prompt), result, texts, r, ctx.epoch);
            } catch (err) {
              const e = toGrpoError(err, 'GRPO_ERR_ROLLOUT'); // e.g. the pool closed: this group fails, coded
              outcome = { groupId: s.groupId, code: e.code, message: e.message };
            }
            source.done(key, outcome, tokens);
          });
        }),
    );
  };
  try {
    for (;;) {
      while (!draining) {
        if (held === null) {
          pulled ??= source.next();
          if (pulled === null) break;
          held = await jobOf(pulled);
          pulled = null;
        }
        if (!sampler.fits(held)) {
          draining = true;
          break;
        }
        if (sampler.freeRows < held.n) break;
        sampler.admit(held);
        inFlight.add(held.key);
        held = null;
      }
      if (sampler.liveJobs === 0) break;
      const t0 = performance.now();
      const finished = sampler.tick();
      stats.sampleSeconds += (performance.now() - t0) / 1000;
      for (const { key, result } of finished) {
        inFlight.delete(key);
        const texts = result.tokens.map((ids) => decodeCompletion(tokenizer, ids));
        const tokens = result.tokens.reduce((n, t) => n + t.length, 0);
        stats.completions += result.tokens.length;
        stats.tokensGenerated += tokens;
        ended.push({ key, result, texts, tokens });
      }
      if (ended.length >= SCORE_BATCH_GROUPS) scoreEnded();
      if (performance.now() - lastYield > yieldMs) {
        scoreEnded();
        await yieldToEventLoop();
        lastYield = performance.now();
      }
    }
  } catch (err) {
    // a grammar hook or the decoder threw: the groups in flight go back to the caller, whose
    // batch path isolates the group that breaks sampling
    stats.error = toGrpoError(err, 'GRPO_ERR_ROLLOUT').message;
    stats.leftover.push(...inFlight);
    if (pulled !== null) stats.leftover.push(pulled);
  } finally {
    sampler.dispose();
  }
  scoreEnded();
  if (held !== null) stats.leftover.push(held.key);
  await Promise.all(scoring);
  return stats;
}
