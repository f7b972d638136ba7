/**
 * The learner's training loop, top to bottom:
 *
 *   wait until prompts_per_step admitted groups are buffered      (workers sample meanwhile)
 *   take them -> GrpoTrainer.step (advantages, inner epochs, AdamW) -> one host read
 *   NaN loss?  stop with GRPO_ERR_NAN_LOSS; the corrupted weights are never saved or published
 *     (with replay_buffer_size > 0, zero-variance groups are first swapped for replayed ones)
 *   prompts of the batch consumed in the data cursor; policy version + 1
 *   curriculum (when configured): the batch's outcomes update the rolling success rate, which
 *   may raise the level before the refill below, so new groups are generated at the new level
 *   publish the new weights (the upload runs beside the next steps; fan-out is the coordinator's)
 *   top the in-flight groups back up (fill)
 *   log the step (stderr, metrics.jsonl, CSV, training_stats.json, Prometheus, progress bar)
 *   every log_completions_steps steps: sample completions to completions.jsonl and the terminal
 *   every eval_interval steps: held-out eval, `best` checkpoint when it improves
 *   every save_interval steps: `checkpoint`
 *
 * The loop stops after config.steps steps, or when `stop` aborts (SIGTERM/SIGINT, or the client
 * gave up); the caller then evaluates and checkpoints once more.
 */
import { stepOrder } from './deterministic.js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GrpoError } from '../shared/errors.js';
import { evaluate } from '../eval/eval.js';
import type { Config } from '../shared/config.js';
import type { LearnerMetrics } from './prometheus.js';
import type { LlamaModel } from '../model/llama.js';
import type { Tokenizer } from '../model/types.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import type { Rng } from '../shared/rng.js';
import type { Task } from '../tasks/types.js';
import type { ProtocolClient } from '../shared/ws-client.js';
import { loraPayload, type LoraPolicy } from './lora-policy.js';
import { bestDir, latestDir, publicConfig, saveLearnerCheckpoint, type EvalRecord, type LearnerTrainerState } from './checkpointing.js';
import { logStepCompletions, type CompletionsLog } from './completions-log.js';
import type { LearnerCurriculum } from './curriculum.js';
import type { DataCursor } from './data-cursor.js';
import type { AdmittedGroup, GroupsInbox } from './groups-inbox.js';
import { stepRecord, type LearnerProgress, type MetricsWriter } from './logging.js';
import type { ReplayBuffer } from './replay.js';
import { stepContext } from './telemetry.js';
import type { GrpoTrainer } from './train-step.js';

/** How often the loop says it is still waiting for groups (no workers, a stalled coordinator). */
export const WAIT_LOG_MS = 30_000; // 30 s

/** Everything one learner run holds; built by runLearner (main.ts). */
export interface LearnerRun {
  config: Config;
  out: string;
  log: ProtocolLogger;
  task: Task;
  tokenizer: Tokenizer;
  policy: LlamaModel;
  lora: LoraPolicy | null; // lora_r > 0: the policy's adapters and their base
  trainer: GrpoTrainer;
  cursor: DataCursor;
  inbox: GroupsInbox;
  client: ProtocolClient;
  rng: Rng; // draws each eval's sampling seed (pass@k), so a resumed run evaluates as an uninterrupted one
  runId: string;
  runKey: string; // the learner's proof of the run (HelloMsg.runKey); saved in <out>/checkpoint only
  step: number; // steps done
  baseline: EvalRecord | null;
  lastEval: EvalRecord | null;
  best: EvalRecord | null;
  metrics: MetricsWriter;
  curriculum: LearnerCurriculum | null; // config curriculum; null = fixed difficulty
  replay: ReplayBuffer | null; // config replay_buffer_size > 0
  telemetry: LearnerMetrics; // Prometheus gauges, counters and histograms (telemetry.ts)
  progress: LearnerProgress | null;
  completions: CompletionsLog | null; // config log_completions_steps > 0: <out>/completions.jsonl
  stop: AbortSignal;
  upload: Promise<void>; // the newest publish: settles when its frames are written or a newer one supersedes it
}

/** Runs steps until config.steps or `stop`; returns the number of steps done by this call. */
export async function trainLoop(run: LearnerRun): Promise<number> {
  const { config, inbox, trainer } = run;
  const P = config.prompts_per_step;
  let done = 0;
  let lastStepEnd = performance.now();
  while (run.step < config.steps && !run.stop.aborted) {
    // one turn of the event loop per step: when groups are already buffered every await of a
    // step can resolve as a microtask, and back-to-back steps would starve the sockets
    // (results, heartbeats, weights upload, /metrics scrapes)
    await yieldToEventLoop();
    const waitStart = performance.now();
    const waitLog = setInterval(() => {
      run.log('info', 'waiting_for_groups', { step: run.step, buffered: inbox.buffered, pending: inbox.pending, need: P });
    }, WAIT_LOG_MS);
    try {
      await inbox.waitFor(P, run.stop);
    } finally {
      clearInterval(waitLog);
    }
    if (run.stop.aborted) break;
    const waitSeconds = (performance.now() - waitStart) / 1000;

    const batch = stepOrder(inbox.take(P), config.deterministic);
    const versionBefore = trainer.policyVersion;
    const fresh = batch.map((g) => g.rollout);
    const replay = run.replay?.substitute(fresh, trainer.policyVersion) ?? null;
    const m = await trainer.step(replay?.groups ?? fresh, run.step);
    if (m.updated && !Number.isFinite(m.loss)) {
      throw new GrpoError(
        'GRPO_ERR_NAN_LOSS',
        `loss is ${m.loss} at step ${run.step + 1} (gradient norm ${m.gradNorm}); the updated weights are corrupt and were not saved. ` +
          `Resume from ${latestDir(run.out)} with a lower --lr (now ${config.lr}) or --grad-clip (now ${config.grad_clip})`,
      );
    }
    inbox.trained(batch);
    run.step += 1;
    done += 1;
    const level = run.curriculum?.observe(batch, run.step, run.log) ?? null;
    inbox.setVersion(trainer.policyVersion);
    if (m.updated) await publish(run);
    inbox.fill();

    const now = performance.now();
    const completionTokens = m.batch.completionTokens;
    const record = stepRecord(m, {
      step: run.step,
      accuracy: batchAccuracy(run.task, batch),
      counts: inbox.counts,
      waitSeconds,
      sampleTokensPerSecond: completionTokens / Math.max(1e-9, (now - lastStepEnd) / 1000),
      curriculum: level,
      replayed: replay?.replayed ?? 0,
    });
    lastStepEnd = now;
    run.log('info', 'step', { ...record });
    run.log('debug', 'step_groups', { step: run.step, groups: batch.map((g) => g.spec.groupId), prompts: batch.map((g) => g.spec.promptIndex) });
    run.metrics.write(record);
    run.telemetry.observeStep(m, stepContext({ step: run.step, waitSeconds, accuracy: record.accuracy, versionBefore }, replay?.groups ?? fresh));
    run.progress?.update(record);
    if (run.completions !== null && run.step % config.log_completions_steps === 0) {
      const print = run.progress ? (text: string) => run.progress!.print(text) : null;
      logStepCompletions(run.completions, replay?.groups ?? fresh, m, { step: run.step, tokenizer: run.tokenizer, print, log: run.log });
    }

    if (config.eval_interval > 0 && run.step % config.eval_interval === 0 && run.step < config.steps) await evalAndKeepBest(run);
    if (config.save_interval > 0 && run.step % config.save_interval === 0 && run.step < config.steps) await saveLatest(run);
  }
  return done;
}

/** Share of the batch's completions the task accepts as correct (the accuracy-style reward). */
export function batchAccuracy(task: Task, batch: readonly AdmittedGroup[]): number {
  let correct = 0;
  let total = 0;
  for (const g of batch) {
    for (const c of g.rollout.completions) {
      total += 1;
      if (task.isCorrect(g.spec.prompt, c.text, g.spec.meta)) correct += 1;
    }
  }
  return total === 0 ? NaN : correct / total;
}

/**
 * Uploads the policy's current weights as its current version. Awaits only the copy to the host
 * (the next step must not change them underneath); the upload itself runs beside training. A
 * version fully written is timed (encoding included) for grpo_learner_weights_publish_seconds;
 * one superseded by a newer version before its last frame is not.
 */
export async function publish(run: LearnerRun): Promise<void> {
  const version = run.trainer.policyVersion;
  const { tensors, adapter } = run.lora ? await loraPayload(run.lora, run.policy, version) : { tensors: await run.policy.toHostTensors(), adapter: undefined };
  const t0 = performance.now();
  run.upload = run.client
    .publishWeights(tensors, version, run.config.weights_encoding, run.config.weights_chunk_bytes, adapter)
    .then(
      (outcome) => {
        if (outcome.sent) run.telemetry.observePublish((performance.now() - t0) / 1000, outcome.bytes);
      },
      (err: Error) => {
        run.log('debug', 'weights_publish_ended', { version, error: err.message });
      },
    );
}

/** Held-out eval of the current policy; records it and refreshes `best` when the accuracy improves. */
export async function evalAndKeepBest(run: LearnerRun): Promise<EvalRecord> {
  const c = run.config;
  const r = await evaluate(run.policy, run.tokenizer, run.task, {
    samples: c.eval_samples,
    k: c.eval_k,
    temperature: c.temperature,
    seed: run.rng.nextU32(),
  });
  const record: EvalRecord = {
    step: run.step,
    policyVersion: run.trainer.policyVersion,
    accuracy: r.accuracy,
    passAtK: r.passAtK,
    k: r.k,
    samples: r.samples,
  };
  run.lastEval = record;
  run.telemetry.observeEval({ accuracy: r.accuracy, passAtK: r.passAtK, k: r.k });
  run.log('info', 'eval', { ...record, seconds: r.seconds, meanCompletionTokens: r.meanCompletionTokens, truncated: r.truncatedFraction });
  if (run.best === null || record.accuracy > run.best.accuracy) {
    run.best = record;
    // best/ is for eval and deployment: it leaves the run key out
    await saveLearnerCheckpoint(bestDir(run.out), { model: run.policy, lora: run.lora, tokenizer: run.tokenizer, state: { ...trainerState(run), runKey: undefined } });
    run.log('info', 'checkpoint_saved', { dir: bestDir(run.out), step: run.step, accuracy: record.accuracy, kind: 'best' });
  }
  return record;
}

/** Writes `<out>/checkpoint`: weights, optimizer, trainer state. */
export async function saveLatest(run: LearnerRun): Promise<void> {
  await saveLearnerCheckpoint(latestDir(run.out), {
    model: run.policy,
    lora: run.lora,
    tokenizer: run.tokenizer,
    optimizer: await run.trainer.exportOptimizerState(),
    state: trainerState(run),
  });
  run.log('info', 'checkpoint_saved', { dir: latestDir(run.out), step: run.step, policyVersion: run.trainer.policyVersion, kind: 'latest' });
}

/** trainer_state.json of the run as it is now (between steps: nothing is being trained). */
export function trainerState(run: LearnerRun): LearnerTrainerState {
  return {
    phase: 'grpo',
    runId: run.runId,
    runKey: run.runKey,
    ...(run.client.epoch !== null ? { epoch: run.client.epoch } : {}),
    step: run.step,
    policyVersion: run.trainer.policyVersion,
    dataCursor: run.cursor.state(),
    rng: run.rng.getState(),
    config: publicConfig(run.config),
    groups: { ...run.inbox.counts },
    baseline: run.baseline,
    lastEval: run.lastEval,
    best: run.best,
    curriculum: run.curriculum?.state() ?? null,
  };
}
