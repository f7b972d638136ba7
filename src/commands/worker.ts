/**
 * `grpo worker`: one rollout worker. Everything about the run (model, tokenizer, task, sampling,
 * reward limits) comes from the learner through the coordinator, so a worker needs only the
 * coordinator's address and the token:
 *
 *   grpo worker --coordinator ws://host:7070 [--token T] [--name N] [--worker-capacity N]
 *               [--reward-threads N] [--backend auto|tensorflow|webgpu|native|wasm|cpu] [--config FILE]
 *               [--metrics-port P [--metrics-host H]]     GET /metrics and /healthz on P
 *
 * GRPO_WORKER_TOKEN, else GRPO_TOKEN, is used when no token is given. A RunSpec's task or reward
 * module is imported only from --allowed-modules, a remote reward called only under
 * --allowed-reward-urls or env GRPO_REMOTE_REWARD_URL (src/rollout-worker/trust.ts). SIGTERM or SIGINT stop it cleanly (the batch in
 * progress is finished and reported); a second signal exits at once.
 */
import { Command } from 'commander';
import { resolveConfig, type Config, type ConfigKey } from '../shared/config.js';
import { addConfigOptions, flagsToRawConfig } from '../shared/config-flags.js';
import { GrpoError } from '../shared/errors.js';
import { runWorker, type WorkerOptions } from '../rollout-worker/main.js';
import { commandAction } from './action.js';
import { processIO, type CommandIO } from './io.js';

/** The config keys a worker reads; each is also a flag. */
export const WORKER_CONFIG_KEYS = [
  'coordinator',
  'token',
  'worker_capacity',
  'reward_threads',
  'backend',
  'device',
  'metrics_port',
  'metrics_host',
  'allowed_modules',
  'allowed_reward_urls',
  'lora_sampling',
] as const satisfies readonly ConfigKey[];

export interface WorkerCommandOptions extends Record<string, unknown> {
  config?: string;
  name?: string;
}

/** Worker options from the resolved config (defaults < file < flags < GRPO_TOKEN). */
export function workerOptionsFrom(config: Config, name: string | undefined): Omit<WorkerOptions, 'log' | 'signal'> {
  if (config.coordinator === null) {
    throw new GrpoError('GRPO_ERR_CONFIG', 'no coordinator address: give --coordinator ws://host:port (or `coordinator` in the config file)');
  }
  return {
    coordinator: config.coordinator,
    token: config.token,
    name,
    capacity: config.worker_capacity,
    rewardThreads: config.reward_threads,
    backend: config.backend,
    device: config.device,
    metricsPort: config.metrics_port,
    metricsHost: config.metrics_host,
    allowedModules: config.allowed_modules,
    allowedRewardUrls: config.allowed_reward_urls,
    loraSampling: config.lora_sampling,
  };
}

/**
 * Runs a worker until `signal` aborts or a fatal error. The registered command passes an
 * AbortSignal fed by SIGTERM/SIGINT; tests pass their own.
 */
export async function workerCommand(opts: WorkerCommandOptions, io: CommandIO, signal: AbortSignal): Promise<void> {
  const config = resolveConfig({ file: opts.config, flags: flagsToRawConfig(opts, WORKER_CONFIG_KEYS), role: 'worker' });
  const options = workerOptionsFrom(config, opts.name);
  io.log('info', 'config', {
    role: 'worker',
    coordinator: options.coordinator,
    auth: options.token !== null,
    capacity: options.capacity,
    rewardThreads: options.rewardThreads,
    backend: options.backend,
    metricsPort: options.metricsPort,
  });
  await runWorker({ ...options, log: io.log, signal });
}

export function registerWorkerCommand(program: Command, io: () => CommandIO = processIO): void {
  const cmd = new Command('worker')
    .description('rollout worker: samples and scores groups leased by the coordinator')
    .option('--name <name>', 'name shown in the coordinator logs (default worker-<pid>@<host>)');
  addConfigOptions(cmd, WORKER_CONFIG_KEYS);
  cmd.action(commandAction(io, workerCommand));
  program.addCommand(cmd);
}
