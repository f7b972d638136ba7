/**
 * `grpo bench step`: times one GRPO-shaped training step of a model of any shape with random
 * weights, the same step as the PyTorch peer /work/shared/bench/torch_scale_step.py: forward,
 * log-probabilities of the next tokens, loss -(mean_t logp * advantage).mean(), backward, AdamW.
 *
 *   grpo bench step --model-config shapes/smollm2-135m.json --batch 4 --seq 128 [--steps 3]
 *       [--gradient-checkpointing] [--group G --prompt P [--no-shared-prefix]]
 *       [--backend auto|tensorflow|native|wasm|cpu] [--json]
 *
 * With --group G and --prompt P the batch is B / G prompts of P tokens, each continued by G
 * different completions (GRPO's groups), and the step runs each prompt once (model/
 * shared-prefix.ts) unless --no-shared-prefix or --gradient-checkpointing; tokens/s still counts
 * every row's B x T positions, so the two settings compare directly.
 *
 * Prints the best and median ms per step after a warm-up step, tokens/s, matmul GFLOP/s as a
 * share of the fp32 peak, and the peak RSS. The fit check runs first: a step that cannot fit
 * fails with GRPO_ERR_MODEL_TOO_LARGE before any weight is allocated.
 */
import type { BackendChoice } from '../engine/backend.js';
import { memoryLimit } from '../engine/memory-limit.js';
import { KernelProfiler, type KernelStat } from '../engine/profiler.js';
import { tf } from '../engine/tf.js';
import { LlamaModel } from '../model/llama.js';
import { findSharedPrefix } from '../model/shared-prefix.js';
import { GrpoError } from '../shared/errors.js';
import { checkStepFits } from '../model/memory-estimate.js';
import { AdamW } from '../optim/adamw.js';
import { Rng } from '../shared/rng.js';
import { benchShape, deviceOf, DEFAULT_PEAK_GFLOPS, forwardFlops, peakRssMb, type ShapeFlags } from './bench-shape.js';
import { startEngine, type CommandIO } from './io.js';

export interface BenchStepOptions extends ShapeFlags {
  steps: string;
  gradientCheckpointing?: boolean;
  group?: string; // rows per shared prompt (default 1: every row its own)
  prompt?: string; // tokens the rows of a group share
  sharedPrefix?: boolean; // false with --no-shared-prefix
  backend: string;
  peakGflops: string;
  json?: boolean;
  profile?: boolean; // time every kernel of the timed steps
  byShape?: boolean; // the same, one row per kernel and input shapes
}

export interface BenchStepResult {
  bench: 'step';
  model: string;
  backend: string;
  device: string;
  params: number;
  batch: number;
  seq: number;
  gradient_checkpointing: boolean;
  group: number; // rows per prompt
  prompt: number; // tokens a group shares
  shared_prefix: boolean; // each prompt ran once
  steps: number;
  best_ms: number;
  median_ms: number;
  tokens_per_s: number;
  matmul_gflops: number;
  peak_fraction: number;
  peak_rss_mb: number;
  estimated_mb: number; // the fit check's estimate of one step
  loss: number;
  profile?: KernelStat[]; // per timed step: the most expensive kernels, with --profile or --by-shape
}

export async function benchStep(opts: BenchStepOptions, io: CommandIO): Promise<BenchStepResult> {
  const shape = benchShape(opts);
  const steps = Math.max(1, Number(opts.steps) || 1);
  const info = await startEngine(opts.backend as BackendChoice, io);
  const checkpoint = opts.gradientCheckpointing === true;
  const limit = memoryLimit();
  const estimate = checkStepFits(shape.config, { batch: shape.batch, seq: shape.seq, checkpoint }, limit.bytes, limit.where, limit.engineBytes);
  const { config, batch: B, seq: T } = shape;
  const G = Number(opts.group ?? 1);
  const P = Number(opts.prompt ?? 0);
  if (!Number.isInteger(G) || G < 1 || B % G !== 0) throw new GrpoError('GRPO_ERR_USAGE', `--group ${opts.group}: a whole number >= 1 that divides --batch ${B}`);
  if (!Number.isInteger(P) || P < 0 || P >= T || (G > 1 && P === 0)) throw new GrpoError('GRPO_ERR_USAGE', `--prompt ${opts.prompt}: a whole number below --seq ${T}, and >= 1 with --group > 1`);
  const model = LlamaModel.create(config, 0);
  const params = model.variables();
  const vars = [...params.values()];
  const names = new Map([...params].map(([name, v]) => [v.name, name]));
  const adamw = new AdamW(params);
  const rng = new Rng(1);
  const hostIds = Int32Array.from({ length: B * T }, () => rng.int(0, config.vocab_size - 1));
  for (let b = 0; b < B; b++) if (b % G !== 0) hostIds.copyWithin(b * T, (b - (b % G)) * T, (b - (b % G)) * T + P); // a group's rows share their prompt
  const prefix = G > 1 && P > 0 && opts.sharedPrefix !== false && !checkpoint ? findSharedPrefix(hostIds, B, T, P) : undefined;
  const ids = tf.tensor2d(hostIds, [B, T], 'int32');
  const adv = tf.tensor1d(Float32Array.from({ length: B }, () => rng.normal())); // [B]
  const step = async (): Promise<number> => {
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() => {
          const logp = model.tokenLogProbs(ids, { checkpoint, prefix }).logp; // [B, T-1]
          // with shared prompts only the completion positions count (as in GRPO), so the loss is
          // the same with and without --no-shared-prefix
          const scored = P > 0 ? logp.slice([0, P - 1], [B, T - P]) : logp;
          return scored.mean(1).mul(adv).mean().neg() as tf.Scalar;
        }),
      vars,
    );
    adamw.apply(new Map(Object.entries(grads).map(([k, g]) => [names.get(k)!, g])), 1e-4);
    tf.dispose(Object.values(grads));
    const loss = (await value.data())[0]; // the one host read per step
    value.dispose();
    return loss;
  };
  const times: number[] = [];
  let loss = NaN;
  const profiler = opts.profile || opts.byShape ? new KernelProfiler(opts.byShape === true) : null;
  let kernels: KernelStat[] = [];
  try {
    await step(); // warm-up: AdamW's moments, kernel set-up, the buffer pool
    profiler?.start();
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      loss = await step();
      times.push(performance.now() - t0);
    }
  } finally {
    if (profiler) kernels = profiler.stop();
    tf.dispose([ids, adv]);
    adamw.dispose();
    model.dispose();
  }
  const best = Math.min(...times);
  const median = [...times].sort((a, b) => a - b)[times.length >> 1];
  const gflops = (3 * forwardFlops(config, B, T, T - 1)) / best / 1e6; // forward + 2x backward
  const peak = Number(opts.peakGflops) || DEFAULT_PEAK_GFLOPS;
  const result: BenchStepResult = {
    bench: 'step',
    model: shape.source,
    backend: info.backend,
    device: deviceOf(info),
    params: estimate.params,
    batch: B,
    seq: T,
    gradient_checkpointing: checkpoint,
    group: G,
    prompt: P,
    shared_prefix: prefix !== undefined,
    steps,
    best_ms: round(best),
    median_ms: round(median),
    tokens_per_s: Math.round((B * T * 1000) / best),
    matmul_gflops: round(gflops),
    peak_fraction: Number((gflops / peak).toFixed(3)),
    peak_rss_mb: peakRssMb(),
    estimated_mb: Math.round(estimate.total / 2 ** 20),
    loss,
  };
  if (profiler) {
    const top = kernels.slice(0, opts.byShape ? 40 : 20);
    result.profile = top.map((k) => ({ kernel: k.kernel, calls: k.calls / steps, ms: round(k.ms / steps), cpuMs: round(k.cpuMs / steps) }));
  }
  if (opts.json) io.out(JSON.stringify(result));
  else {
    io.out(
      `train step of ${shape.source} (${(result.params / 1e6).toFixed(1)}M params, ${B}x${T} tokens${checkpoint ? ', gradient checkpointing' : ''}` +
        `${G > 1 ? `, groups of ${G} sharing ${P} prompt tokens${prefix ? ' (each prompt once)' : ' (whole rows)'}` : ''}) on ${result.device}:\n` +
        `  best ${result.best_ms} ms, median ${result.median_ms} ms over ${steps} steps; ${result.tokens_per_s} tokens/s; ` +
        `${result.matmul_gflops} GFLOP/s = ${(result.peak_fraction * 100).toFixed(1)}% of ${peak} GFLOP/s fp32 peak; ` +
        `peak RSS ${result.peak_rss_mb} MB (estimated step ${result.estimated_mb} MB)`,
    );
    if (result.profile) {
      const kernelMs = kernels.reduce((s, k) => s + k.ms, 0) / steps;
      const kernelCpu = kernels.reduce((s, k) => s + k.cpuMs, 0) / steps;
      io.out(`  kernels ${round(kernelMs)} ms wall, ${round(kernelCpu)} ms process CPU per step (the rest is the engine's bookkeeping and JS):`);
      for (const k of result.profile) io.out(`    ${k.ms.toFixed(1).padStart(9)} ms ${k.cpuMs.toFixed(1).padStart(9)} ms CPU ${String(k.calls).padStart(5)}x  ${k.kernel}`);
    }
  }
  return result;
}

function round(x: number): number {
  return Number(x.toFixed(1));
}
