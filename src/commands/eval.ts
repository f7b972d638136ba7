/**
 * `grpo eval`: greedy accuracy, pass@k, mean@k and majority@k of a checkpoint on a task's
 * held-out problems (src/eval/eval.ts defines the metrics).
 *
 *   grpo eval --model DIR --dataset FILE [--test-dataset FILE] [--system-prompt TEXT] ...
 *   grpo eval --checkpoint DIR [--task arithmetic] [--samples N] [--k K] [--n N]
 *             [--temperature T] [--json] [--backend ...]
 *   grpo eval --compare A B [--names baseline,grpo] [--out FILE.json] [same flags]
 *
 * The task, its options and its seed default to the ones saved in the checkpoint's
 * trainer_state.json (so a run is scored on the problems it held out), else the config defaults.
 * --compare evaluates two checkpoints on the same problems with the same sampling seed and
 * prints them side by side (./eval-compare.ts). What both share (flags, the saved run's task,
 * scoring one checkpoint) is in ./eval-checkpoint.ts, so neither imports the other.
 */
import { Command } from 'commander';
import { coerceFlag } from '../shared/config-flags.js';
import type { BackendChoice } from '../engine/backend.js';
import { GrpoError } from '../shared/errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { compareCommand } from './eval-compare.js';
import { evalOptions, evalTask, evaluateCheckpoint, savedConfig, type EvalCommandOptions, type EvalReport } from './eval-checkpoint.js';
import { startEngine, type CommandIO } from './io.js';

export type { EvalCommandOptions, EvalReport } from './eval-checkpoint.js';

export async function evalCommand(opts: EvalCommandOptions, io: CommandIO): Promise<EvalReport> {
  if (opts.model !== undefined && opts.checkpoint !== undefined && opts.model !== opts.checkpoint) {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', '--model and --checkpoint both given; they name the same thing, give one');
  }
  opts = { ...opts, checkpoint: opts.checkpoint ?? opts.model };
  if (opts.checkpoint === undefined) throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', 'give --checkpoint DIR (or --model DIR), or --compare A B');
  const backend = (opts.backend !== undefined ? coerceFlag('backend', opts.backend) : 'auto') as BackendChoice;
  const engine = await startEngine(backend, io);
  const ckpt = await loadCheckpoint(opts.checkpoint);
  const saved = savedConfig(ckpt.trainerState, opts.checkpoint);
  const { task, seed } = await evalTask(opts, saved, ckpt);
  const report = await evaluateCheckpoint(opts.checkpoint, ckpt, task, evalOptions(opts, saved, seed), seed, engine.backend);
  io.out(opts.json ? JSON.stringify(report) : formatReport(report));
  return report;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** A readable summary: the numbers, then a few greedy examples. */
export function formatReport(r: EvalReport): string {
  const rows: [string, string][] = [
    ['checkpoint', r.checkpoint],
    ['task', `${r.task} ${JSON.stringify(r.taskOptions)} seed ${r.seed}`],
    ['problems', String(r.samples)],
    ['accuracy (greedy)', `${pct(r.accuracy)} (${r.correct}/${r.samples})`],
    [`pass@${r.k}`, r.passAtK === null ? 'n/a (use --k or --n > 1)' : `${pct(r.passAtK)} (n=${r.n}, temperature ${r.temperature})`],
    [`mean@${r.k}`, r.meanAtK === null ? 'n/a' : pct(r.meanAtK)],
    [`majority@${r.k}`, r.majAtK === null ? 'n/a' : pct(r.majAtK)],
    ['mean completion tokens', r.meanCompletionTokens.toFixed(2)],
    ['truncated', pct(r.truncatedFraction)],
    ['seconds', `${r.seconds.toFixed(1)} on ${r.backend}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  if (r.examples.length > 0) {
    lines.push('', 'examples (greedy):');
    for (const e of r.examples) {
      lines.push(`  ${e.correct ? 'ok  ' : 'FAIL'}  ${e.prompt}${e.completion}${e.correct ? '' : `   (expected ${e.target ?? '?'})`}`);
    }
  }
  return lines.join('\n');
}

export function registerEval(program: Command, io: () => CommandIO): void {
  program.addCommand(
    new Command('eval')
      .description('held-out accuracy (greedy), pass@k, mean@k and majority@k of a checkpoint, or of two side by side')
      .option('--checkpoint <dir>', 'checkpoint directory')
      .option('--model <dir>', 'a pretrained Hugging Face checkpoint directory (the same as --checkpoint)')
      .option('--dataset <file>', 'JSONL/JSON/CSV/Parquet problems: evaluated on the share held out by --test-fraction and --seed (default: the run\'s)')
      .option('--test-dataset <file>', 'evaluate on every row of this file')
      .option('--test-fraction <x>', 'share of --dataset held out (default: the run\'s, else 0.1)')
      .option('--prompt-field <path>', 'dotted path of the prompt in each record')
      .option('--answer-field <path>', 'dotted path of the reference answer')
      .option('--system-prompt <text>', 'a system message before each prompt')
      .option('--apply-chat-template <true|false>', 'wrap prompts in the checkpoint\'s chat template (default true)')
      .option('--compare <dirs...>', 'two checkpoint directories A B: both on the same problems, printed side by side')
      .option('--names <a,b>', 'column names for --compare (default: the directory names)')
      .option('--out <file>', 'with --compare: also write the comparison to this JSON file')
      .option('--task <name>', 'task name or module path (default: the checkpoint run\'s task)')
      .option('--task-options <json|k=v,...>', 'task knobs (default: the checkpoint run\'s)')
      .option('--seed <n>', 'task seed fixing the held-out problems (default: the checkpoint run\'s)')
      .option('--samples <n>', 'held-out problems (default: config eval_samples)')
      .option('--k <k>', 'k of pass@k, mean@k and majority@k (default 1: greedy accuracy only)')
      .option('--n <n>', 'completions sampled per problem for pass@k (default k)')
      .option('--temperature <t>', 'sampling temperature for pass@k', '1')
      .option('--batch-size <n>', 'sequences per sampler call', '64')
      .option('--backend <auto|tensorflow|webgpu|native|wasm|cpu>', 'tensor engine', 'auto')
      .option('--json', 'print one JSON object')
      .action(async (opts: EvalCommandOptions) => {
        if (opts.compare !== undefined) await compareCommand(opts, io());
        else await evalCommand(opts, io());
      }),
  );
}
