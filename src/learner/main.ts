/**
 * The learner role: owns the policy, the optimizer, the frozen reference (only when kl_coef > 0)
 * and the dataset; connects to the coordinator as the one learner; trains on the groups the
 * workers send back; publishes each new policy version; evaluates and checkpoints.
 *
 *   const summary = await runLearner(config, { checkpoint: 'runs/sft', out: 'runs/grpo' });
 *
 * Start-up, in order: engine -> policy from --checkpoint (or everything from --resume) -> task,
 * trainer, data cursor -> the current weights are published BEFORE connecting, so the Hello names
 * the learner's version (a learner resumed from an older checkpoint rolls the coordinator back to
 * it) -> connect; after every Welcome: RunSpec, then Enqueue of every group still waiting ->
 * baseline eval on a fresh run (workers are already sampling) -> the loop (loop.ts) -> final eval
 * and checkpoint. SIGTERM/SIGINT (opts.signal) stop the loop between steps; the run is then
 * checkpointed (no final eval) and runLearner returns with `interrupted: true`.
 *
 * Per-step metrics go to <out>/metrics.jsonl, <out>/training_stats.json, `log_csv` when set, and
 * Prometheus (GET /metrics on `metrics_port` when > 0; telemetry.ts).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import { parseConfig, type Config } from '../shared/config.js';
import { initEngine } from '../engine/backend.js';
import { GrpoError } from '../shared/errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import type { Tokenizer } from '../model/types.js';
import { Kind, silentLogger, type ProtocolLogger, type RemoteRewardSpec, type RewardFunctionSpec, type RunSpec } from '../shared/protocol.js';
import { Rng } from '../shared/rng.js';
import { loadRewardModule, promptIds, runRewardDefaults } from '../tasks/index.js';
import { loadRunTask } from '../tasks/run-task.js';
import type { Task, TaskReward } from '../tasks/types.js';
import { looksLikeModulePath } from '../tasks/user-module.js';
import { ProtocolClient } from '../shared/ws-client.js';
import { batchOptionsFromConfig, checkStepGroup, resolveRewardWeights } from './batch.js';
import { bestDir, latestDir, loadResumePoint, publicConfig, type EvalRecord, type ResumePoint } from './checkpointing.js';
import { LearnerCurriculum } from './curriculum.js';
import { DataCursor } from './data-cursor.js';
import { checkGroupForRun } from './group-check.js';
import { GroupsInbox, type InboxCounts } from './groups-inbox.js';
import { CompletionsLog } from './completions-log.js';
import { learnerProgressBar, MetricsWriter } from './logging.js';
import { evalAndKeepBest, publish, saveLatest, trainLoop, type LearnerRun } from './loop.js';
import { startLearnerTelemetry } from './telemetry.js';
import { ReplayBuffer } from './replay.js';
import { groupSeed } from './deterministic.js';
import { loraPolicy, type LoraPolicy } from './lora-policy.js';
import { GrpoTrainer } from './train-step.js';

/** How long the learner waits at the end for its last weights upload to be written out. */
export const FINAL_UPLOAD_WAIT_MS = 10_000; // 10 s

export interface LearnerOptions {
  checkpoint: string; // the initial policy (and the reference model when kl_coef > 0)
  out: string; // checkpoints, metrics.jsonl
  resume?: string; // a <out>/checkpoint directory written by an earlier learner
  steps?: number; // total steps (resumed steps included); default config.steps
  log?: ProtocolLogger;
  signal?: AbortSignal; // abort: checkpoint after the current step and return
  progressStream?: NodeJS.WriteStream | null; // a TTY for the progress bar
  metricsRegistry?: Registry; // the learner's metrics go here (default: a new registry)
  alsoServeMetrics?: readonly Registry[]; // served beside them on metrics_port (grpo train: the coordinator's)
}

export interface LearnerSummary {
  runId: string;
  out: string;
  steps: number; // steps done in total, resumed ones included
  stepsThisRun: number;
  policyVersion: number;
  wallSeconds: number;
  interrupted: boolean;
  baselineAccuracy: number | null; // held-out greedy accuracy before the first step
  finalAccuracy: number | null; // after the last step; null when interrupted (unless that step was just evaluated)
  finalPassAtK: number | null;
  bestAccuracy: number | null;
  bestStep: number | null;
  curriculumLevel: number | null; // the level reached (null without a curriculum)
  groups: InboxCounts & { redispatched: number | null }; // redispatched: from the coordinator's /healthz
  checkpoint: string; // <out>/checkpoint
  best: string | null; // <out>/best
}

/** The run's RunSpec: what every worker needs besides the weights. */
export function runSpecOf(
  runId: string,
  config: Config,
  policy: LlamaModel,
  run: { tokenizer: Pick<Tokenizer, 'toJSON' | 'bosId' | 'addsBos' | 'eosId' | 'stopIds' | 'padId'>; task: Task; moduleRewards: readonly TaskReward[]; rewardWeights: Readonly<Record<string, number>> },
): RunSpec {
  const jsOnly = looksLikeModulePath(config.task) || config.reward_module !== null;
  return {
    runId,
    model: { ...policy.config },
    tokenizer: run.tokenizer.toJSON(),
    // nil BOS for a tokenizer whose post-processor adds none (Qwen2), so every worker leaves it out as promptIds does
    specialTokens: { bosId: run.tokenizer.addsBos === false ? null : run.tokenizer.bosId, eosId: run.tokenizer.eosId, padId: run.tokenizer.padId, stopIds: [...run.tokenizer.stopIds] },
    task: { name: config.task, seed: config.seed, options: { ...run.task.options }, jsOnly },
    rewardWeights: { ...config.reward_weights },
    sampling: { temperature: config.temperature, topK: config.top_k, topP: config.top_p, maxNewTokens: config.max_gen_len, seed: config.seed },
    rewards: {
      timeoutMs: config.reward_timeout_ms,
      retries: config.reward_retries,
      module: config.reward_module,
      remote: remoteRewardOf(config),
      functions: rewardFunctionsOf(run.task, run.moduleRewards, config.remote_reward_url === null ? null : config.remote_reward_name, run.rewardWeights),
    },
  };
}

/** The run's active rewards in scoring order (task, module, remote) with their resolved weights. */
export function rewardFunctionsOf(
  task: Task,
  moduleRewards: readonly TaskReward[],
  remoteName: string | null,
  rewardWeights: Readonly<Record<string, number>>,
): RewardFunctionSpec[] {
  const scoped = (r: TaskReward, source: RewardFunctionSpec['source']): RewardFunctionSpec => ({
    name: r.name,
    weight: rewardWeights[r.name] ?? r.weight,
    scope: r.group ? 'group' : 'completion',
    source,
  });
  const all = [...task.rewards.map((r) => scoped(r, 'task')), ...moduleRewards.map((r) => scoped(r, 'module'))];
  if (remoteName !== null) all.push({ name: remoteName, weight: rewardWeights[remoteName] ?? 0, scope: 'group', source: 'remote' });
  return all.filter((r) => r.weight !== 0);
}

/** The run's remote reward from the config's remote_reward_* keys; null when no URL is set. */
export function remoteRewardOf(config: Config): RemoteRewardSpec | null {
  if (config.remote_reward_url === null) return null;
  return {
    url: config.remote_reward_url,
    name: config.remote_reward_name,
    weight: config.remote_reward_weight,
    timeoutMs: config.remote_reward_timeout_ms,
    retries: config.remote_reward_retries,
    backoffMs: config.remote_reward_backoff_ms,
    maxInFlight: config.remote_reward_max_in_flight,
  };
}

/** The coordinator's re-dispatch count from GET /healthz, or null when it cannot be reached. */
export async function coordinatorRedispatches(wsUrl: string): Promise<number | null> {
  try {
    const url = new URL('/healthz', wsUrl.replace(/^ws(s?):/, 'http$1:'));
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return null;
    const body = (await res.json()) as { ledger?: { redispatched?: unknown } };
    return typeof body.ledger?.redispatched === 'number' ? body.ledger.redispatched : null;
  } catch {
    return null; // the coordinator is gone or unreachable: the count is unknown, not 0
  }
}

interface Loaded {
  policy: LlamaModel;
  lora: LoraPolicy | null; // lora_r > 0: the adapters on the frozen base (policy is lora.policy)
  reference: LlamaModel | null; // owned here; only when resuming with kl_coef > 0
  point: ResumePoint | null;
  tokenizer: ResumePoint['checkpoint']['tokenizer'];
}

async function loadModels(config: Config, opts: LearnerOptions): Promise<Loaded> {
  if (opts.resume === undefined) {
    const ckpt = await loadCheckpoint(opts.checkpoint);
    const lora = loraPolicy(config, ckpt, opts.checkpoint);
    const policy = lora?.policy ?? LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
    return { policy, lora, reference: null, point: null, tokenizer: ckpt.tokenizer };
  }
  const point = await loadResumePoint(opts.resume);
  const lora = loraPolicy(config, point.checkpoint, opts.checkpoint, point.checkpoint.adapters);
  const policy = lora?.policy ?? LlamaModel.fromHostTensors(point.checkpoint.config, point.checkpoint.weights);
  let reference: LlamaModel | null = null;
  try {
    // under LoRA the frozen base is the reference (the trainer takes a view of it)
    if (config.kl_coef > 0 && lora === null) {
      // the KL anchor is the run's initial policy, not the resumed weights
      const ref = await loadCheckpoint(opts.checkpoint);
      if (JSON.stringify(ref.config) !== JSON.stringify(policy.config)) {
        throw new GrpoError('GRPO_ERR_RESUME', `reference ${opts.checkpoint} has another model config than ${opts.resume}; pass the run's initial --checkpoint`);
      }
      reference = LlamaModel.fromHostTensors(ref.config, ref.weights, { trainable: false });
    }
  } catch (err) {
    policy.dispose();
    lora?.adapters.dispose();
    throw err;
  }
  return { policy, lora, reference, point, tokenizer: point.checkpoint.tokenizer };
}

export async function runLearner(config: Config, opts: LearnerOptions): Promise<LearnerSummary> {
  const t0 = performance.now();
  const out = resolve(opts.out);
  config = parseConfig({ ...config, out, checkpoint: opts.checkpoint, steps: opts.steps ?? config.steps }, 'learner config');
  if (config.coordinator === null) throw new GrpoError('GRPO_ERR_CONFIG', 'the learner needs --coordinator ws://host:port');
  const baseLog = opts.log ?? silentLogger;
  await initEngine({ backend: config.backend, device: config.device, log: () => {} });

  const loaded = await loadModels(config, opts);
  const { policy, point } = loaded;
  const disposers: (() => unknown)[] = [() => policy.dispose(), () => loaded.lora?.adapters.dispose(), () => loaded.reference?.dispose()];
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stop.abort();
  const failure: { fatal: GrpoError | null } = { fatal: null }; // the client gave up (refused token, protocol version)
  const progress = opts.progressStream ? learnerProgressBar(opts.progressStream, baseLog) : null;
  const log = progress?.log ?? baseLog;
  try {
    // prompts formatted for the checkpoint (chat template, system_prompt); a dataset file's rows when one is given
    const task = await loadRunTask(config, {
      tokenizer: loaded.tokenizer,
      contextTokens: policy.config.max_position_embeddings,
      source: opts.checkpoint,
      log,
    });
    const curriculum = await LearnerCurriculum.create(config, point?.state.curriculum); // null without one
    if (config.max_gen_len < task.maxCompletionTokens) {
      // under a grammar a cut completion is never a whole word: it scores as invalid
      log('warn', 'max_gen_len_short', { maxGenLen: config.max_gen_len, taskMaxCompletionTokens: task.maxCompletionTokens, task: task.name });
    }
    // every reward the workers score: the task's, the reward module's, the remote judge
    const moduleRewards = config.reward_module === null ? [] : await loadRewardModule(config.reward_module);
    const rewardWeights = resolveRewardWeights(runRewardDefaults(task, moduleRewards, remoteRewardOf(config)), config.reward_weights);
    const trainer = new GrpoTrainer({
      config,
      policy,
      rewardWeights,
      ...(loaded.reference ? { reference: loaded.reference } : {}),
      policyVersion: point?.state.policyVersion ?? 0,
    });
    disposers.unshift(() => trainer.dispose());
    if (point) trainer.importOptimizerState(point.checkpoint.optimizer!);
    const cursor = point?.cursor ?? new DataCursor();
    const rng = new Rng(config.seed);
    if (point) rng.setState(point.state.rng);
    const runId = point?.state.runId ?? `run-${randomBytes(4).toString('hex')}`;
    // proves to the coordinator that a resumed learner is this run's (learner-slot.ts); a secret, kept only in <out>/checkpoint
    const runKey = point?.state.runKey ?? randomBytes(24).toString('hex');

    const client = new ProtocolClient({
      url: config.coordinator,
      role: 'learner',
      name: `learner@${hostname()}`,
      token: config.token ?? undefined, // undefined: env GRPO_LEARNER_TOKEN, else GRPO_TOKEN
      runKey,
      // the newest resume epoch the run's checkpoint knows: the coordinator gives this process a higher one
      ...(point?.state.epoch !== undefined ? { epoch: point.state.epoch } : {}),
      maxPayloadBytes: config.max_payload_bytes,
      weightsChunkBytes: config.weights_chunk_bytes,
      log,
    });
    disposers.unshift(() => client.close());
    const batchOptions = batchOptionsFromConfig(config, policy.config, rewardWeights);
    const groupCheck = { rewardWeights, promptTokens: (prompt: string) => promptIds(loaded.tokenizer, prompt) };
    const groupTag = `${runId}.${randomBytes(3).toString('hex')}`; // a new tag per process: ids never repeat across restarts
    const inbox = new GroupsInbox({
      tag: groupTag,
      groupSize: config.group_size,
      promptsPerStep: config.prompts_per_step,
      // deterministic mode (src/learner/deterministic.ts): on-policy, one seed per step and prompt
      maxStaleness: config.deterministic ? 0 : config.max_staleness,
      ...(config.deterministic ? { seedOf: (promptIndex: number) => groupSeed(config.seed, run.step, promptIndex) } : {}),
      cursor,
      example: (i) => curriculum?.example(i) ?? task.example('train', i),
      send: (msg) => client.send(msg),
      validate: (g, spec) => {
        checkGroupForRun(g, spec, groupCheck);
        checkStepGroup(g, batchOptions);
      },
      onRefused: (code) => telemetry.metrics.observeRefused(code), // results arrive after start(), telemetry exists by then
      log,
      policyVersion: trainer.policyVersion,
      epoch: () => client.epoch ?? 0,
      counts: point?.state.groups,
      maxFailedInRow: config.max_failed_groups_in_row,
      onStuck: (err) => {
        log('error', 'groups_failing', { code: err.code, error: err.message });
        failure.fatal ??= err;
        stop.abort();
      },
    });
    const telemetry = await startLearnerTelemetry({
      config,
      registry: opts.metricsRegistry,
      alsoServe: opts.alsoServeMetrics,
      inbox: () => ({ buffered: inbox.buffered, pending: inbox.pending }),
      connected: () => client.connected,
      log,
    });
    disposers.unshift(() => telemetry.close());
    const run: LearnerRun = {
      config,
      out,
      log,
      task,
      tokenizer: loaded.tokenizer,
      policy,
      lora: loaded.lora,
      trainer,
      cursor,
      inbox,
      client,
      rng,
      runId,
      runKey,
      step: point?.state.step ?? 0,
      baseline: point?.state.baseline ?? null,
      lastEval: point?.state.lastEval ?? null,
      best: point?.state.best ?? null,
      curriculum,
      replay: config.replay_buffer_size > 0 && !config.deterministic ? new ReplayBuffer({ size: config.replay_buffer_size, maxAge: config.replay_max_age, rewardWeights }) : null,
      metrics: new MetricsWriter(join(out, 'metrics.jsonl'), config.log_csv, { append: point !== null, statsPath: join(out, 'training_stats.json') }),
      telemetry: telemetry.metrics,
      progress,
      completions: config.log_completions_steps > 0 ? new CompletionsLog(join(out, 'completions.jsonl'), { append: point !== null }) : null,
      stop: stop.signal,
      upload: Promise.resolve(),
    };

    const spec = runSpecOf(runId, config, policy, { ...run, moduleRewards, rewardWeights });
    client.on(Kind.GroupResult, (msg) => inbox.onResult(msg));
    client.on(Kind.GroupExhausted, (msg) => inbox.onExhausted(msg));
    client.onEvent('welcome', (w) => {
      client.send({ kind: Kind.RunSpec, spec });
      inbox.resync();
      const lora = run.lora;
      if (lora !== null && lora.publishedBase !== null && (w.weightsVersion === null || w.weightsVersion < lora.publishedBase)) {
        // a coordinator without our LoRA base (restarted) cannot take adapter payloads: send the base again
        lora.publishedBase = null;
        void publish(run);
      }
      log('info', 'learner_connected', { session: w.sessionId, coordinatorVersion: w.policyVersion, version: trainer.policyVersion, epoch: client.epoch, pending: inbox.pending });
    });
    client.onEvent('fatal', (err) => {
      failure.fatal = err;
      stop.abort();
    });

    log('info', 'learner_start', {
      runId,
      groupTag,
      coordinator: config.coordinator,
      resume: opts.resume ?? null,
      fromStep: run.step,
      steps: config.steps,
      policyVersion: trainer.policyVersion,
      params: policy.numParams(),
      reference: trainer.hasReference,
      inFlight: inbox.target,
      metrics: telemetry.server?.url ?? null,
      config: publicConfig(config),
    });
    if (point !== null) {
      log('info', 'learner_resumed', { from: opts.resume, step: run.step, policyVersion: trainer.policyVersion, cursor: cursor.counts, curriculumLevel: curriculum?.level ?? null });
    }
    await publish(run); // before start(): the Hello carries this version
    inbox.fill(); // dropped until the Welcome, whose handler re-sends them
    const welcomed = client.start();
    await Promise.race([welcomed, new Promise<void>((r) => stop.signal.addEventListener('abort', () => r(), { once: true }))]);
    if (failure.fatal !== null) throw failure.fatal;

    progress?.start(config.steps, run.step);
    if (run.step === 0 && run.baseline === null && !stop.signal.aborted) {
      run.baseline = await evalAndKeepBest(run); // workers already sample the first groups meanwhile
    }
    const stepsThisRun = stop.signal.aborted ? 0 : await trainLoop(run);
    inbox.close(); // no verdicts after the loop: what the checkpoint says is what the coordinator heard
    progress?.stop();
    const interrupted = run.step < config.steps;
    let final: EvalRecord | null = run.lastEval?.step === run.step ? run.lastEval : null;
    if (!interrupted && final === null) final = await evalAndKeepBest(run);
    await saveLatest(run);
    if (failure.fatal !== null) throw failure.fatal;
    // let the last version reach the coordinator (workers joining later get it), but never hang on it
    await Promise.race([run.upload, new Promise<void>((r) => setTimeout(r, FINAL_UPLOAD_WAIT_MS).unref())]);

    const summary: LearnerSummary = {
      runId,
      out,
      steps: run.step,
      stepsThisRun,
      policyVersion: trainer.policyVersion,
      wallSeconds: (performance.now() - t0) / 1000,
      interrupted,
      baselineAccuracy: run.baseline?.accuracy ?? null,
      finalAccuracy: final?.accuracy ?? null,
      finalPassAtK: final?.passAtK ?? null,
      bestAccuracy: run.best?.accuracy ?? null,
      bestStep: run.best?.step ?? null,
      curriculumLevel: curriculum?.level ?? null,
      groups: { ...inbox.counts, redispatched: await coordinatorRedispatches(config.coordinator) },
      checkpoint: latestDir(out),
      best: run.best === null ? null : bestDir(out),
    };
    log('info', 'learner_done', { ...summary });
    return summary;
  } finally {
    progress?.stop();
    opts.signal?.removeEventListener('abort', onAbort);
    for (const dispose of disposers) await dispose();
  }
}
