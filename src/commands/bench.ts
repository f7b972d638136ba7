/**
 * `grpo bench step|sample`: throughput of a model of any shape (a Hugging Face config.json or a
 * preset) with random weights, on the chosen backend. See bench-step.ts and bench-sample.ts.
 */
import { Command } from 'commander';
import { benchSample, type BenchSampleOptions } from './bench-sample.js';
import { benchStep, type BenchStepOptions } from './bench-step.js';
import { DEFAULT_PEAK_GFLOPS } from './bench-shape.js';
import type { CommandIO } from './io.js';

const BACKEND_FLAG = ['--backend <auto|tensorflow|native|wasm|cpu>', 'tensor engine (the report names the one used)', 'auto'] as const;

function shapeOptions(cmd: Command): Command {
  return cmd
    .option('--model-config <file>', "a Hugging Face config.json (llama or qwen2): the model's shape")
    .option('--model-size <name>', 'a preset instead: tiny, small, medium or base (vocabulary 256)')
    .option('--batch <n>', 'sequences per batch', '4');
}

export function registerBench(program: Command, io: () => CommandIO): void {
  const bench = new Command('bench').description('throughput of a model shape with random weights: bench step, bench sample');
  bench.addCommand(
    shapeOptions(new Command('step').description('time one training step (forward, backward, AdamW) and report ms, tokens/s, peak share, peak RSS'))
      .option('--seq <n>', 'tokens per sequence', '128')
      .option('--steps <n>', 'timed steps after one warm-up step', '3')
      .option('--gradient-checkpointing', 'recompute each decoder layer in backward (less memory)')
      .option('--group <n>', 'rows per prompt (GRPO group_size): each group of rows shares its first --prompt tokens', '1')
      .option('--prompt <n>', 'prompt tokens each group shares (with --group > 1)', '0')
      .option('--no-shared-prefix', 'run every row whole even where rows share a prompt (the default runs each prompt once)')
      .option('--peak-gflops <n>', "the machine's fp32 peak, GFLOP/s, for the peak share", String(DEFAULT_PEAK_GFLOPS))
      .option(...BACKEND_FLAG)
      .option('--json', 'print one JSON object')
      .option('--profile', 'also time every kernel of the timed steps (the profile adds a little overhead)')
      .option('--by-shape', 'like --profile, one row per kernel and input shapes')
      .action(async (opts: BenchStepOptions) => {
        await benchStep(opts, io());
      }),
  );
  bench.addCommand(
    shapeOptions(new Command('sample').description('time batched sampling with the KV cache and report new tokens/s, peak RSS'))
      .option('--seq <n>', 'prompt + new tokens per sequence')
      .option('--prompt <n>', 'prompt tokens per sequence (default 64, or half of --seq)')
      .option('--new <n>', 'new tokens per sequence (default 64, or the rest of --seq)')
      .option(...BACKEND_FLAG)
      .option('--json', 'print one JSON object')
      .action(async (opts: BenchSampleOptions) => {
        await benchSample(opts, io());
      }),
  );
  program.addCommand(bench);
}
