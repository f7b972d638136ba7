/**
 * How many bytes one training step of a Llama needs at its peak, as the process's resident set,
 * and a check that it fits before the first step: a model that cannot fit fails with
 * GRPO_ERR_MODEL_TOO_LARGE naming the estimate and the knobs that shrink it, never with a wasm
 * Aborted() or the kernel's OOM killer halfway through.
 *
 * Parts (float32 unless said; P parameters; N = B * T tokens of the micro-batch):
 *   runtime      node, tfjs, the native addon and OpenBLAS: RUNTIME_BYTES
 *   weights      4 P, plus one copy of the fused q/k/v and gate/up matrices the forward concatenates
 *   gradients    4 P (+ fused), and 4 P more per extra gradient sum the caller holds beside them
 *                (micro-batch accumulation, the clipped copy: `extraGradients`)
 *   optimizer    AdamW's two moments, 8 P, plus its update temporaries (two of the largest parameter)
 *   reference    a frozen reference model: 4 P (+ its fused copies), or 2 P held as 16-bit
 *                (reference_dtype, half-reference.ts; widened only for its forward, before the peak)
 *   host copies  float32 copies of the weights the process keeps beside the tensors (published
 *                weights, an in-process coordinator's latest version): 4 P each
 *   activations  what the forward saves for backward, per layer about
 *                ACTIVATION_FACTOR * (8 d + 3 (nH + 2 nKV) hd + 6 I) floats per token plus the
 *                attention blocks 3 B nH T^2; with gradient checkpointing d per layer plus one
 *                layer's worth (recomputed in backward); plus the chunked head (head-logprobs.ts):
 *                two chunks of logits and three [V, d] sums in its backward
 *   LoRA         with adapters (StepShape.lora) AdamW state is the adapters' alone (r (in + out)
 *                per adapted module); the gradient term is kept whole (BENCHMARKS.md, "Peak
 *                memory of the LoRA step": the measured LoRA peak is near the full step's);
 *                each adapted module adds to the activations its side path's saved tensors per
 *                token: the [r] low-rank product and the [out] scaled term, and with lora_dropout
 *                the dropped input and its mask (2 in floats and in bytes; lora-side.ts)
 *   pool         the native backend's free buffers kept for reuse: what the step frees and asks
 *                for again, up to the pool's cap (engineBytes); it fills as gradients and
 *                activations are freed, so the peak holds the larger of the two, not both
 * and SLACK on top for allocator fragmentation and buffers waiting for the GC.
 * Checked against peak RSS measured on the native backend (tests/model/memory-estimate.test.ts
 * holds the table, BENCHMARKS.md the commands).
 */
import { GrpoError } from '../shared/errors.js';
import { HEAD_CHUNK_BYTES } from './head-logprobs.js';
import { headDim, llamaParamShapes } from './llama-params.js';
import type { LlamaConfig } from './types.js';

export type ReferenceStorage = 'none' | 'f32' | 'f16'; // f16: any 2-byte type (bfloat16, float16)

export interface StepShape {
  batch: number; // sequences per micro-batch
  seq: number; // tokens per sequence
  checkpoint?: boolean; // gradient_checkpointing
  reference?: ReferenceStorage; // a frozen reference model held beside the policy
  extraGradients?: number; // float32 gradient sums held beside the step's own (default 0)
  hostCopies?: number; // float32 host copies of the weights the process keeps (default 0)
  /** LoRA: the adapted modules (every layer's) with their shapes; only the adapters train. */
  lora?: { r: number; dropout: boolean; targets: readonly { in: number; out: number }[] };
}

export interface StepBytes {
  params: number; // parameter count
  runtime: number;
  weights: number;
  gradients: number;
  optimizer: number; // AdamW moments and update temporaries
  reference: number;
  hostCopies: number;
  activations: number;
  pool: number; // the engine's free buffers (0 unless engineBytes is given)
  slack: number;
  total: number;
}

/** node + tfjs + the native addon + OpenBLAS: about 100 MB at start, 394 MB peak for a 0.8M model's step. */
export const RUNTIME_BYTES = 200 * 2 ** 20;
/** tfjs saves more per op than the sum below counts (both inputs of a product, reshaped copies). */
const ACTIVATION_FACTOR = 1;
/** Free buffers the pool collects, as a multiple of the step's activations (measured 1.2-1.6, capped). */
const POOL_FACTOR = 1.6;
/** Allocator fragmentation and buffers waiting for the GC, as a share of the rest. */
const SLACK = 0.1;
/** Fraction of the memory limit the estimate may use. */
const HEADROOM = 0.95;

export function estimateStepBytes(c: LlamaConfig, s: StepShape, engineBytes = 0): StepBytes {
  const shapes = [...llamaParamShapes(c).values()].map((shape) => shape.reduce((a, b) => a * b, 1));
  const params = shapes.reduce((a, b) => a + b, 0);
  const largest = Math.max(...shapes);
  const d = c.hidden_size;
  const I = c.intermediate_size;
  const hd = headDim(c);
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const L = c.num_hidden_layers;
  const N = s.batch * s.seq;
  const fusedCopies = L * d * ((nH + 2 * nKV) * hd + 2 * I); // wqkv and wgu concatenations
  const weights = 4 * (params + fusedCopies);
  const lora = s.lora;
  // AdamW state: every parameter's, or with LoRA the adapters' alone. The gradient term stays
  // whole with LoRA: a LoRA step's measured peak was only 0.36 GiB below the full step's
  // (135M shape, BENCHMARKS.md), so the backward's transients take about that room anyway.
  const trained = lora ? lora.targets.reduce((a, t) => a + lora.r * (t.in + t.out), 0) : params;
  const trainedLargest = lora ? Math.max(0, ...lora.targets.map((t) => lora.r * Math.max(t.in, t.out))) : largest;
  const gradients = 4 * (params + fusedCopies) + 4 * params * (s.extraGradients ?? 0);
  const optimizer = 8 * trained + 2 * 4 * trainedLargest;
  const reference = s.reference === 'f32' ? 4 * (params + fusedCopies) : s.reference === 'f16' ? 2 * params + 4 * fusedCopies : 0;
  const hostCopies = 4 * params * (s.hostCopies ?? 0);
  const perLayer = ACTIVATION_FACTOR * N * (8 * d + 3 * (nH + 2 * nKV) * hd + 6 * I) + 3 * s.batch * nH * s.seq * s.seq;
  // the adapters' side paths, over all layers (one layer's worth live with checkpointing)
  const side = lora ? N * lora.targets.reduce((a, t) => a + lora.r + t.out + (lora.dropout ? 2.25 * t.in : 0), 0) : 0;
  const layers = s.checkpoint ? L * N * d + perLayer + side / L : L * perLayer + side;
  const head = 2 * Math.min(HEAD_CHUNK_BYTES, 4 * N * c.vocab_size) + 3 * 4 * c.vocab_size * d;
  const activations = 4 * (layers + 4 * N * d) + head;
  // The pool holds buffers the step freed: while it is full, fewer tensors are live (its peak
  // comes after backward, with the gradients and activations gone), so it counts beside the
  // step's transient bytes, not on top of them.
  const pool = Math.min(engineBytes, POOL_FACTOR * activations);
  const rest = RUNTIME_BYTES + weights + optimizer + reference + hostCopies + Math.max(gradients + activations, pool);
  const slack = SLACK * rest;
  return { params, runtime: RUNTIME_BYTES, weights, gradients, optimizer, reference, hostCopies, activations, pool, slack, total: rest + slack };
}

/**
 * Throws GRPO_ERR_MODEL_TOO_LARGE when the estimate (with the engine's pool of up to
 * `engineBytes`) exceeds `limitBytes` (with headroom). `where` names the limit (e.g. "the wasm
 * backend's 4 GB heap" or "the memory available to this process (...)").
 */
export function checkStepFits(c: LlamaConfig, s: StepShape, limitBytes: number, where: string, engineBytes = 0): StepBytes {
  const b = estimateStepBytes(c, s, engineBytes);
  if (b.total <= HEADROOM * limitBytes) return b;
  const knobs = [
    `micro_batch_size (now ${s.batch}; activations scale with it)`,
    s.checkpoint ? null : 'gradient_checkpointing: true (activations to about one layer)',
    'a shorter max_gen_len (tokens per sequence)',
    s.reference === 'f32' ? 'reference_dtype: bfloat16 (the KL reference at 2 bytes per parameter)' : null,
    s.reference === 'f32' || s.reference === 'f16' ? 'kl_coef: 0 (no reference model) or LoRA (the frozen base is the reference, no copy)' : null,
    engineBytes > 0 ? 'GRPO_POOL_MB (the buffer pool cap, now ' + Math.round(engineBytes / 2 ** 20) + ' MB)' : null,
    where.includes('wasm') ? '--backend native (no 4 GB heap)' : null,
  ].filter((k): k is string => k !== null);
  throw new GrpoError(
    'GRPO_ERR_MODEL_TOO_LARGE',
    `one training step of this model (${(b.params / 1e6).toFixed(1)}M parameters, micro-batch ${s.batch} x ${s.seq} tokens) needs about ${gb(b.total)} at its peak: ` +
      `weights ${gb(b.weights)}, gradients ${gb(b.gradients)}, AdamW state ${gb(b.optimizer)}, ` +
      (b.reference > 0 ? `reference model ${gb(b.reference)}, ` : '') +
      (b.hostCopies > 0 ? `host copies of the weights ${gb(b.hostCopies)}, ` : '') +
      `activations at this batch ${gb(b.activations)}` +
      (b.pool > 0 ? `, engine buffer pool ${gb(b.pool)}` : '') +
      `, runtime and slack ${gb(b.runtime + b.slack)}; ${where} allows ${gb(HEADROOM * limitBytes)}. Shrink it with: ${knobs.join('; ')}`,
  );
}

function gb(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GB`;
}
