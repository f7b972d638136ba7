/**
 * `grpo train`: the whole distributed trainer on one machine, as one command.
 *
 *   grpo train [--config FILE] [--out DIR] [any config flag]      (no arguments: the arithmetic demo)
 *
 * 1. SFT warm start into <out>/sft when no --checkpoint or --model is given (reused when <out>/sft already
 *    holds a finished SFT run with the same task, model and SFT settings);
 * 2. a coordinator on 127.0.0.1, port chosen by the OS, with a random token for this run;
 * 3. `workers` rollout workers as child processes (`node <dist>/cli.js worker`, real WebSockets,
 *    the token in GRPO_TOKEN), started while the learner measures the baseline;
 * 4. the learner in this process (baseline eval, `steps` GRPO steps, final eval; see
 *    src/learner/main.ts), checkpointing into <out>/checkpoint and <out>/best;
 * 5. workers and coordinator stopped; <out>/summary.json written; the improvement printed.
 *
 * Metrics: with --metrics-port P (> 0) every role can be scraped on loopback: the learner and
 * the in-process coordinator together on P, local worker i on P + 1 + i (localMetricsPorts);
 * the coordinator's own port (chosen by the OS, in the `coordinator_listening` log line) serves
 * its /metrics too. The per-step files (metrics.jsonl, training_stats.json, --log-csv) are
 * written whatever the port.
 *
 * SIGTERM/SIGINT: SFT or the learner stop after the current step and checkpoint; the workers and
 * the coordinator are stopped; summary.json says `interrupted: true`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { startCoordinator } from '../coordinator/main.js';
import { publicConfig } from '../learner/checkpointing.js';
import { runLearner, type LearnerSummary } from '../learner/main.js';
import { formatRewardTrends, rewardTrendsOfFile, type RewardTrends } from '../learner/reward-summary.js';
import { parseConfig, resolveConfig, type Config } from '../shared/config.js';
import { addConfigOptions, flagsToRawConfig } from '../shared/config-flags.js';
import { GrpoError } from '../shared/errors.js';
import { writeFailure } from '../shared/write-error.js';
import { localMetricsPorts } from '../shared/metrics/server.js';
import { isCompleteCheckpoint } from '../model/checkpoint.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import { sftProgressBar, trainSft } from '../offline/sft.js';
import { commandAction } from './action.js';
import { coordinatorOptions } from './coordinator.js';
import { processIO, startEngine, type CommandIO } from './io.js';
import { findDeviceSelectLayer, listPciGpus } from '../engine/device-select.js';
import { localWorkerDevices, startLocalWorkers } from './local-workers.js';
import { SFT_IDENTITY_KEYS } from './sft.js';
import { looksLikeModulePath } from '../tasks/user-module.js';

export interface TrainSummary {
  task: string;
  baselineAccuracy: number | null; // held-out greedy accuracy of the GRPO start policy
  finalAccuracy: number | null; // after GRPO
  improvementPoints: number | null; // (final - baseline) * 100
  bestAccuracy: number | null;
  steps: number;
  interrupted: boolean;
  wallSeconds: number; // the whole command, SFT included
  sftSeconds: number; // 0 when a checkpoint was given or the SFT run reused
  grpoSeconds: number;
  groups: { admitted: number; dropped: number; droppedStale: number; failed: number; redispatched: number };
  workers: number;
  backend: string;
  sft: { dir: string; reused: boolean; accuracy: number | null } | null;
  checkpoint: string; // <out>/checkpoint
  best: string | null;
  evalSamples: number;
  /** The weighted total (`total`) and each reward function: mean over the first and last fifth of the steps. */
  rewards: RewardTrends;
}

export interface TrainCommandOptions {
  config?: string;
  [flag: string]: unknown;
}

interface WarmStart {
  dir: string;
  reused: boolean;
  seconds: number;
  accuracy: number | null;
  interrupted: boolean;
}

/** True when `dir` holds a finished SFT run made with the same identity keys as `config`. */
async function reusableSft(dir: string, config: Config): Promise<{ accuracy: number | null } | null> {
  if (!(await isCompleteCheckpoint(dir))) return null;
  let state: { phase?: unknown; step?: unknown; config?: Record<string, unknown>; eval?: { accuracy?: number } };
  try {
    state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8'));
  } catch {
    return null; // no trainer state: not ours to reuse
  }
  if (state.phase !== 'sft' || state.step !== config.sft_steps || !state.config) return null;
  const same = SFT_IDENTITY_KEYS.every((k) => JSON.stringify(state.config![k]) === JSON.stringify(config[k]));
  return same ? { accuracy: state.eval?.accuracy ?? null } : null;
}

async function warmStart(config: Config, out: string, io: CommandIO, signal: AbortSignal): Promise<WarmStart> {
  const dir = join(out, 'sft');
  const sftConfig = parseConfig({ ...config, out: dir, token: null }, 'sft config');
  const previous = await reusableSft(dir, sftConfig);
  if (previous !== null) {
    io.log('info', 'sft_reused', { dir, steps: config.sft_steps, accuracy: previous.accuracy });
    return { dir, reused: true, seconds: 0, accuracy: previous.accuracy, interrupted: false };
  }
  const bar = io.progressStream ? sftProgressBar(io.progressStream, io.log) : null;
  const r = await trainSft({ config: sftConfig, log: bar?.log ?? io.log, progress: bar ?? undefined, signal });
  return { dir, reused: false, seconds: r.seconds, accuracy: r.eval.accuracy, interrupted: r.interrupted };
}

/** dist/cli.js beside this module's parent (compiled), or the package's dist/ (run from src/ in tests). */
export function cliScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', 'cli.js'), join(here, '..', '..', 'dist', 'cli.js')];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new GrpoError('GRPO_ERR_WORKER_SPAWN', `cannot find the compiled CLI to start workers (looked for ${candidates.join(', ')}); build it with \`npx tsc -p .\``);
  }
  return found;
}

/** On a TTY the progress bars own the screen: other roles' info lines are left out there. */
function sideLog(io: CommandIO): ProtocolLogger {
  if (io.progressStream === null) return io.log;
  return (level, event, fields) => {
    if (level === 'warn' || level === 'error') io.log(level, event, fields);
  };
}

export async function trainCommand(opts: TrainCommandOptions, io: CommandIO, signal: AbortSignal = new AbortController().signal): Promise<TrainSummary | null> {
  const t0 = performance.now();
  const given = resolveConfig({ file: opts.config, flags: flagsToRawConfig(opts) });
  if (given.workers < 1) {
    throw new GrpoError('GRPO_ERR_CONFIG', 'grpo train needs --workers 1 or more; to bring your own workers run grpo coordinator, grpo learner and grpo worker instead');
  }
  const metricsPorts = given.metrics_port > 0 ? localMetricsPorts(given.metrics_port, given.workers) : null; // checked before SFT
  const out = resolve(given.out);
  const engine = await startEngine(given.backend, io, given.device);
  io.log('info', 'config', { command: 'train', ...publicConfig(given), out });

  let sft: WarmStart | null = null;
  if (given.model !== null && given.checkpoint !== null && resolve(given.model) !== resolve(given.checkpoint)) {
    throw new GrpoError('GRPO_ERR_CONFIG', `--model ${given.model} and --checkpoint ${given.checkpoint} both name the start policy; give one`);
  }
  let checkpoint = given.checkpoint ?? given.model; // a pretrained --model starts GRPO directly, no SFT warm start
  if (checkpoint === null && given.dataset !== null) {
    throw new GrpoError('GRPO_ERR_CONFIG', `--dataset ${given.dataset} needs a model that can read it: give --model DIR (a pretrained Hugging Face checkpoint); the SFT warm start trains only character-level models of the built-in tasks`);
  }
  if (checkpoint === null) {
    sft = await warmStart(given, out, io, signal);
    if (sft.interrupted) {
      io.out(`interrupted during SFT; its checkpoint is ${sft.dir} (run grpo train again with the same flags to redo it)`);
      return null;
    }
    checkpoint = sft.dir;
  }

  // this run's secrets: one per role (a worker's cannot open a learner session), or the user's one token for both
  const learnerToken = given.token ?? randomBytes(16).toString('hex');
  const token = given.token ?? randomBytes(16).toString('hex'); // the workers' token; they get it by env
  const coord = await startCoordinator({ ...coordinatorOptions(given, sideLog(io)), host: '127.0.0.1', port: 0, token, workerToken: token, learnerToken });
  const config = parseConfig({ ...given, coordinator: coord.url, token: learnerToken, checkpoint, out, metrics_host: '127.0.0.1' }, 'train config');
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) stop.abort();
  const failure: { workers: GrpoError | null } = { workers: null };
  const devices = localWorkerDevices(config.workers, {
    backend: engine.backend,
    device: config.device,
    gpus: engine.backend === 'webgpu' ? listPciGpus().length : 0,
    deviceSelectLayer: engine.backend === 'webgpu' && findDeviceSelectLayer() !== null,
  });
  if (config.device === null && devices.some((d) => d !== null)) io.log('info', 'worker_devices', { learner: 0, workers: devices });
  const workers = startLocalWorkers({
    cli: cliScript(),
    count: config.workers,
    url: coord.url,
    token,
    args: ['--backend', config.backend, '--worker-capacity', String(config.worker_capacity), '--reward-threads', String(config.reward_threads), '--lora-sampling', config.lora_sampling, ...trustFlags(config)],
    argsOf: (i) => [
      ...(devices[i] === null ? [] : ['--device', String(devices[i])]),
      ...(metricsPorts === null ? [] : ['--metrics-port', String(metricsPorts.workers[i]), '--metrics-host', config.metrics_host]),
    ],
    log: sideLog(io),
    onAllExited: (err) => {
      failure.workers = err;
      stop.abort();
    },
  });
  const tGrpo = performance.now();
  let learner: LearnerSummary;
  let redispatched: number;
  try {
    learner = await runLearner(config, {
      checkpoint,
      out,
      log: io.log,
      signal: stop.signal,
      progressStream: io.progressStream,
      alsoServeMetrics: [coord.metrics], // the coordinator is scraped on the learner's port
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    await workers.stop();
    redispatched = coord.stats().ledger.redispatched;
    await coord.close();
  }
  if (failure.workers !== null) throw failure.workers;

  const g = learner.groups;
  const b = learner.baselineAccuracy;
  const f = learner.finalAccuracy;
  const summary: TrainSummary = {
    task: config.task,
    baselineAccuracy: b,
    finalAccuracy: f,
    improvementPoints: b === null || f === null ? null : 100 * (f - b),
    bestAccuracy: learner.bestAccuracy,
    steps: learner.steps,
    interrupted: learner.interrupted,
    wallSeconds: (performance.now() - t0) / 1000,
    sftSeconds: sft?.seconds ?? 0,
    grpoSeconds: (performance.now() - tGrpo) / 1000,
    groups: { admitted: g.admitted, dropped: g.droppedStale + g.failed, droppedStale: g.droppedStale, failed: g.failed, redispatched },
    workers: config.workers,
    backend: engine.backend,
    sft: sft === null ? null : { dir: sft.dir, reused: sft.reused, accuracy: sft.accuracy },
    checkpoint: learner.checkpoint,
    best: learner.best,
    evalSamples: (await evaluatedSamples(learner.checkpoint)) ?? config.eval_samples,
    rewards: await rewardTrendsOfFile(join(out, 'metrics.jsonl')),
  };
  const path = join(out, 'summary.json');
  await writeFile(path, `${JSON.stringify(summary, null, 2)}\n`).catch((err: unknown) => {
    throw writeFailure(path, err, 'run summary');
  });
  io.log('info', 'train_done', { ...summary, summary: path });
  io.out(formatSummary(summary, path));
  return summary;
}

/**
 * Held-out problems the last evaluation scored, from the checkpoint's trainer_state.json: fewer
 * than eval_samples when a dataset's test split is smaller. null when it cannot be read.
 */
async function evaluatedSamples(checkpoint: string): Promise<number | null> {
  try {
    const state = JSON.parse(await readFile(join(checkpoint, 'trainer_state.json'), 'utf8')) as { lastEval?: { samples?: unknown } | null };
    const n = state.lastEval?.samples;
    return typeof n === 'number' ? n : null;
  } catch {
    return null; // no checkpoint written (interrupted before one): the configured count stands
  }
}

const pct = (x: number | null): string => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);

export function formatSummary(s: TrainSummary, path: string): string {
  const gain = s.improvementPoints === null ? '' : ` (${s.improvementPoints >= 0 ? '+' : ''}${s.improvementPoints.toFixed(1)} points)`;
  const g = s.groups;
  return [
    `held-out accuracy on ${s.evalSamples} ${s.task} problems: ${pct(s.baselineAccuracy)} -> ${pct(s.finalAccuracy)}${gain}` +
      `${s.interrupted ? ' [interrupted]' : ''}`,
    `${s.steps} GRPO steps with ${s.workers} worker${s.workers === 1 ? '' : 's'} in ${s.grpoSeconds.toFixed(1)} s (${s.wallSeconds.toFixed(1)} s in all, SFT ${s.sftSeconds.toFixed(1)} s); ` +
      `groups admitted ${g.admitted}, dropped ${g.dropped} (stale ${g.droppedStale}, failed ${g.failed}), re-dispatched ${g.redispatched}`,
    ...(Object.keys(s.rewards ?? {}).length > 0 ? [`rewards, first -> last fifth of the steps: ${formatRewardTrends(s.rewards)}`] : []),
    `checkpoint ${s.checkpoint}${s.best ? `, best ${s.best}` : ''}; summary ${path}`,
  ].join('\n');
}

export function registerTrainCommand(program: Command, io: () => CommandIO = processIO): void {
  const cmd = new Command('train').description('coordinator, learner and local workers on loopback as one command (no arguments: the arithmetic demo)');
  addConfigOptions(cmd);
  cmd.action(commandAction(io, trainCommand));
  program.addCommand(cmd);
}

/** The local workers may import this run's own modules and call its own remote reward (src/rollout-worker/trust.ts). */
function trustFlags(config: Config): string[] {
  const modules = [config.task, config.reward_module].filter((m): m is string => m !== null && looksLikeModulePath(m));
  return [
    ...(modules.length > 0 ? ['--allowed-modules', modules.join(',')] : []),
    ...(config.remote_reward_url !== null ? ['--allowed-reward-urls', config.remote_reward_url] : []),
  ];
}
