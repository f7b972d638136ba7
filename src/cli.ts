#!/usr/bin/env node
/**
 * The `grpo` command line (the package's bin): one subcommand per job, each registered by its
 * module in src/commands. Failures print one line, `error GRPO_ERR_X: message`, on stderr and
 * exit non-zero (2 for usage errors, 1 otherwise); results go to stdout, logs to stderr.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { registerBench } from './commands/bench.js';
import { registerCoordinatorCommand } from './commands/coordinator.js';
import { registerDoctor } from './commands/doctor.js';
import { registerEval } from './commands/eval.js';
import { registerExport } from './commands/export.js';
import { processIO, type CommandIO } from './commands/io.js';
import { registerJudgeTrain } from './commands/judge-train.js';
import { registerLearnerCommand } from './commands/learner.js';
import { registerScore } from './commands/score.js';
import { registerSft } from './commands/sft.js';
import { registerTrainCommand } from './commands/train.js';
import { registerWorkerCommand } from './commands/worker.js';
import { toGrpoError } from './shared/errors.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0'; // run from an unusual layout: the version is cosmetic
  }
}

export function buildProgram(io: () => CommandIO = processIO): Command {
  const program = new Command('grpo')
    .description('distributed GRPO trainer for language models')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: () => {} }); // errors are printed once, coded, by run()
  registerTrainCommand(program, io);
  registerCoordinatorCommand(program, io);
  registerLearnerCommand(program, io);
  registerWorkerCommand(program, io);
  registerSft(program, io);
  registerEval(program, io);
  registerScore(program, io);
  registerJudgeTrain(program, io);
  registerDoctor(program, io);
  registerExport(program, io);
  registerBench(program, io);
  for (const cmd of program.commands) {
    for (const c of [cmd, ...cmd.commands]) c.exitOverride().configureOutput({ outputError: () => {} });
  }
  return program;
}

/** Parses `argv` (process.argv form) and runs the command; returns the exit code. */
export async function run(argv: string[], io: () => CommandIO = processIO): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      process.stderr.write(`error GRPO_ERR_USAGE: ${err.message.replace(/^error: /, '')}\n`);
      return 2;
    }
    const e = toGrpoError(err, 'GRPO_ERR_INTERNAL');
    process.stderr.write(`error ${e.code}: ${e.message}\n`);
    if (e.code === 'GRPO_ERR_INTERNAL' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

/** True when this file is the program being run (directly or through the npm bin symlink). */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  process.exitCode = await run(process.argv);
}
