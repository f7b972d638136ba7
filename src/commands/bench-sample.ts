/**
 * `grpo bench sample`: batched sampling with the KV cache (prefill, then one position per step)
 * on a model of any shape with random weights: `--batch` prompts of `--prompt` tokens, `--new`
 * new tokens each (temperature 1, no stop token, so every row runs to the end).
 *
 *   grpo bench sample --model-config shapes/smollm2-135m.json --batch 8 --prompt 64 --new 64 [--json]
 *
 * `--seq` is accepted too, as prompt + new (split evenly when --prompt/--new are not given).
 */
import type { BackendChoice } from '../engine/backend.js';
import { nativeDecodeBlocker } from '../model/decode-path.js';
import { LlamaModel } from '../model/llama.js';
import { sample } from '../model/sampling.js';
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import { benchShape, deviceOf, peakRssMb, type ShapeFlags } from './bench-shape.js';
import { startEngine, type CommandIO } from './io.js';

export interface BenchSampleOptions extends Omit<ShapeFlags, 'seq'> {
  seq?: string;
  prompt?: string;
  new?: string;
  backend: string;
  json?: boolean;
}

export interface BenchSampleResult {
  bench: 'sample';
  model: string;
  backend: string;
  device: string;
  decoder: string; // 'native', or 'tfjs (why the native decoder did not run)'
  params: number;
  batch: number;
  prompt: number;
  new_tokens: number;
  ms: number;
  tokens_per_s: number; // new tokens per second, all rows together
  peak_rss_mb: number;
}

export async function benchSample(opts: BenchSampleOptions, io: CommandIO): Promise<BenchSampleResult> {
  const total = opts.seq ?? String(Number(opts.prompt ?? 64) + Number(opts.new ?? 64));
  const shape = benchShape({ ...opts, seq: total });
  const P = opts.prompt !== undefined ? Number(opts.prompt) : opts.new !== undefined ? shape.seq - Number(opts.new) : shape.seq >> 1;
  const N = shape.seq - P;
  if (!Number.isSafeInteger(P) || P < 1 || N < 1) {
    throw new GrpoError('GRPO_ERR_USAGE', `--prompt and --new must be positive integers that add up to --seq (${shape.seq}); got prompt ${P}, new ${N}`);
  }
  const info = await startEngine(opts.backend as BackendChoice, io);
  const model = LlamaModel.create(shape.config, 0);
  const params = model.numParams();
  const blocker = nativeDecodeBlocker(model); // what sample() with decoder 'auto' (as the workers) picks
  const decoder = blocker === null ? 'native' : `tfjs (${blocker})`;
  const rng = new Rng(2);
  const V = shape.config.vocab_size;
  const prompts = Array.from({ length: shape.batch }, () => Array.from({ length: P }, () => rng.int(3, V - 1)));
  const sampleOpts = { maxNewTokens: N, temperature: 1, topK: 0, topP: 1, stopTokens: [], seed: 3 };
  let ms: number;
  try {
    await sample(model, prompts.slice(0, 1), { ...sampleOpts, maxNewTokens: 2 }); // warm-up: kernels, rotary tables
    const t0 = performance.now();
    await sample(model, prompts, sampleOpts);
    ms = performance.now() - t0;
  } finally {
    model.dispose();
  }
  const result: BenchSampleResult = {
    bench: 'sample',
    model: shape.source,
    backend: info.backend,
    device: deviceOf(info),
    decoder,
    params,
    batch: shape.batch,
    prompt: P,
    new_tokens: N,
    ms: Math.round(ms),
    tokens_per_s: Math.round((shape.batch * N * 1000) / ms),
    peak_rss_mb: peakRssMb(),
  };
  if (opts.json) io.out(JSON.stringify(result));
  else {
    io.out(
      `sampling ${shape.source} (${(result.params / 1e6).toFixed(1)}M params), ${shape.batch} x (${P} prompt + ${N} new) tokens with the KV cache on ${result.device}, ${decoder} decoder:\n` +
        `  ${result.ms} ms, ${result.tokens_per_s} new tokens/s; peak RSS ${result.peak_rss_mb} MB`,
    );
  }
  return result;
}
