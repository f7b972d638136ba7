/**
 * `grpo learner`: the learner role of a distributed run (src/learner/main.ts).
 *
 *   grpo learner --coordinator ws://host:7070 --checkpoint runs/sft [--steps N] [--out DIR]
 *                [--config FILE] [any config flag]   token: --token, GRPO_LEARNER_TOKEN or GRPO_TOKEN
 *   grpo learner --resume runs/grpo/checkpoint --coordinator ws://host:7070 [--steps N]
 *
 * Exits 0 after --steps steps (total, resumed ones included). On --resume, the run's saved config
 * is the base, a --config file and flags override it (e.g. a larger --steps to train on), and
 * --checkpoint defaults to the run's initial policy (the KL reference). SIGTERM/SIGINT: the step in
 * progress finishes, the run is checkpointed into <out>/checkpoint, and the learner exits 0.
 */
import { roleToken } from '../shared/credentials.js';
import { Command } from 'commander';
import { runLearner, type LearnerSummary } from '../learner/main.js';
import { savedRunConfig } from '../learner/checkpointing.js';
import { parseConfig, readConfigFile, resolveConfig, type Config, type RawConfig } from '../shared/config.js';
import { addConfigOptions, flagsToRawConfig } from '../shared/config-flags.js';
import { GrpoError } from '../shared/errors.js';
import { commandAction } from './action.js';
import { processIO, startEngine, type CommandIO } from './io.js';

export interface LearnerCommandOptions {
  config?: string; // --config FILE
  resume?: string;
  [flag: string]: unknown; // commander's parsed config flags (camelCase)
}

/**
 * DEFAULTS < the resumed run's saved config < --config file < flags < GRPO_TOKEN (token only).
 * Without --resume this is resolveConfig's order.
 */
export async function learnerConfig(opts: LearnerCommandOptions, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const flags: RawConfig = flagsToRawConfig(opts);
  if (opts.resume === undefined) return resolveConfig({ file: opts.config, flags, env, role: 'learner' });
  const { token: _secret, ...saved } = await savedRunConfig(opts.resume); // never saved, dropped all the same
  const merged: Record<string, unknown> = { ...saved, ...(opts.config ? readConfigFile(opts.config) : {}), ...flags };
  if ((merged.token === undefined || merged.token === null) && roleToken('learner', env)) merged.token = roleToken('learner', env);
  return parseConfig(merged, `${opts.resume}/trainer_state.json + ${opts.config ? `${opts.config} + ` : ''}flags`);
}

export async function learnerCommand(opts: LearnerCommandOptions, io: CommandIO, signal?: AbortSignal): Promise<LearnerSummary> {
  const config = await learnerConfig(opts);
  if (config.checkpoint === null) {
    throw new GrpoError('GRPO_ERR_CONFIG', 'grpo learner needs --checkpoint DIR (the initial policy, e.g. the output of grpo sft)');
  }
  if (config.coordinator === null) throw new GrpoError('GRPO_ERR_CONFIG', 'grpo learner needs --coordinator ws://host:port');
  await startEngine(config.backend, io, config.device);
  const s = await runLearner(config, {
    checkpoint: config.checkpoint,
    out: config.out,
    resume: opts.resume,
    log: io.log,
    signal,
    progressStream: io.progressStream,
  });
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
  io.out(
    `learner ${s.interrupted ? 'interrupted' : 'done'}: step ${s.steps}/${config.steps} (policy v${s.policyVersion}), ` +
      `held-out accuracy ${pct(s.baselineAccuracy)} -> ${pct(s.finalAccuracy)}, groups admitted ${s.groups.admitted}, ` +
      `stale ${s.groups.droppedStale}, failed ${s.groups.failed}, ${s.wallSeconds.toFixed(1)} s, checkpoint ${s.checkpoint}`,
  );
  return s;
}

export function registerLearnerCommand(program: Command, io: () => CommandIO = processIO): void {
  const cmd = new Command('learner')
    .description('the learner: trains on groups from the coordinator\'s workers, publishes weights, evaluates, checkpoints')
    .option('--resume <dir>', 'continue the run checkpointed in this directory (<out>/checkpoint)');
  addConfigOptions(cmd);
  cmd.action(commandAction(io, learnerCommand));
  program.addCommand(cmd);
}
