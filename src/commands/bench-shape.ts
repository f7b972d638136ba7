/**
 * What `grpo bench step|sample` share: the model shape from `--model-config FILE.json` (a Hugging
 * Face config.json of a supported family; random weights) or `--model-size NAME` (a preset,
 * vocabulary 256), the matmul FLOPs of a forward pass, and the report's engine and memory fields.
 */
import { readFileSync } from 'node:fs';
import type { EngineInfo } from '../engine/backend.js';
import { parseLlamaConfig } from '../model/checkpoint-config.js';
import { MODEL_SIZES, presetConfig, type ModelSize } from '../model/presets.js';
import type { LlamaConfig } from '../model/types.js';
import { GrpoError } from '../shared/errors.js';

/** fp32 peak of the 2-core AVX-512 development machine, GFLOP/s (override with --peak-gflops). */
export const DEFAULT_PEAK_GFLOPS = 250;

export interface ShapeFlags {
  modelConfig?: string;
  modelSize?: string;
  batch: string;
  seq: string;
}

export interface BenchShape {
  config: LlamaConfig;
  source: string; // the file or preset name
  batch: number;
  seq: number;
}

export function benchShape(f: ShapeFlags): BenchShape {
  const batch = positive('--batch', f.batch);
  const seq = positive('--seq', f.seq);
  if ((f.modelConfig === undefined) === (f.modelSize === undefined)) {
    throw new GrpoError('GRPO_ERR_USAGE', 'give exactly one of --model-config FILE.json and --model-size NAME');
  }
  let config: LlamaConfig;
  let source: string;
  if (f.modelSize !== undefined) {
    if (!MODEL_SIZES.includes(f.modelSize as ModelSize)) {
      throw new GrpoError('GRPO_ERR_USAGE', `--model-size is one of ${MODEL_SIZES.join(', ')}, got ${JSON.stringify(f.modelSize)}`);
    }
    config = presetConfig(f.modelSize as ModelSize, { vocabSize: 256, bosId: 1, eosId: 2, padId: 0 });
    source = `preset ${f.modelSize}`;
  } else {
    source = f.modelConfig!;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(source, 'utf8')) as unknown;
    } catch (err) {
      throw new GrpoError('GRPO_ERR_USAGE', `--model-config ${source}: cannot read it as JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
    config = parseLlamaConfig(raw, source); // any supported family: llama, qwen2, qwen3, gemma2
  }
  if (seq > config.max_position_embeddings) {
    config = { ...config, max_position_embeddings: seq }; // random weights: the window is only a table size
  }
  return { config, source, batch, seq };
}

function positive(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new GrpoError('GRPO_ERR_USAGE', `${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Matmul FLOPs of one forward pass over B sequences of T tokens (2 per multiply-add), scoring
 * `scored` positions per sequence with the head; attention counts the full T x T (the model
 * computes masked scores too). Elementwise work is left out: it is small next to this.
 */
export function forwardFlops(c: LlamaConfig, B: number, T: number, scored: number): number {
  const d = c.hidden_size;
  const hd = c.head_dim ?? d / c.num_attention_heads;
  const q = c.num_attention_heads * hd;
  const kv = c.num_key_value_heads * hd;
  const perToken = 2 * d * (q + 2 * kv) + 2 * q * d + 2 * d * 2 * c.intermediate_size + 2 * c.intermediate_size * d;
  const attention = 2 * 2 * T * T * q; // scores and context, per sequence and layer
  return c.num_hidden_layers * (B * T * perToken + B * attention) + B * scored * 2 * d * c.vocab_size;
}

/** The device line of a report: backend, provider and, for our kernels, threads and BLAS core. */
export function deviceOf(info: EngineInfo): string {
  const parts = [`${info.backend} (${info.provider})`];
  if (info.native) parts.push(`native kernels x${info.threads ?? '?'} threads${info.blasCore ? `, OpenBLAS ${info.blasCore}` : ''}`);
  return parts.join(', ');
}

/** Peak resident set size of this process so far, MB. */
export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
