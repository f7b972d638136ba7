/**
 * How many bytes one training step of a Llama needs, and a check that it fits before the first
 * step: a model that cannot fit fails with GRPO_ERR_MODEL_TOO_LARGE naming the estimate and the
 * knobs that shrink it, never with a wasm Aborted() or the kernel's OOM killer halfway through.
 *
 * Float32 throughout. Per trainable parameter: the weight, its gradient, AdamW's two moments
 * (16 bytes), plus one copy of the fused q/k/v and gate/up matrices the forward concatenates.
 * Activations kept for backward, per token of the micro-batch (N = B * T):
 *   per layer, about 8 d + 3 (nH + 2 nKV) hd + 6 I floats, and 3 B nH T^2 for the attention
 *   scores, probabilities and their masked sum (the largest block at long T);
 *   with gradient checkpointing, d per layer plus one layer's worth (recomputed in backward).
 *   The head is chunked (head-logprobs.ts): one chunk of logits, forward and backward.
 * The estimate is deliberately a little high (transient temporaries on top of what is saved).
 */
import { GrpoError } from '../shared/errors.js';
import { HEAD_CHUNK_BYTES } from './head-logprobs.js';
import { headDim, llamaParamShapes } from './llama-params.js';
import type { LlamaConfig } from './types.js';

export interface StepShape {
  batch: number; // sequences per micro-batch
  seq: number; // tokens per sequence
  checkpoint?: boolean; // gradient_checkpointing
  reference?: 'none' | 'f32' | 'f16'; // a frozen reference model held beside the policy
}

export interface StepBytes {
  params: number; // parameter count
  weights: number;
  gradients: number;
  optimizer: number; // AdamW moments
  reference: number;
  activations: number;
  total: number;
}

/** Fraction of the memory limit the estimate may use (the runtime, tokenizer, buffers take the rest). */
const HEADROOM = 0.85;

export function estimateStepBytes(c: LlamaConfig, s: StepShape): StepBytes {
  let params = 0;
  for (const shape of llamaParamShapes(c).values()) params += shape.reduce((a, b) => a * b, 1);
  const d = c.hidden_size;
  const I = c.intermediate_size;
  const hd = headDim(c);
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const L = c.num_hidden_layers;
  const N = s.batch * s.seq;
  const fusedCopies = L * d * ((nH + 2 * nKV) * hd + 2 * I); // wqkv and wgu concatenations
  const weights = 4 * (params + fusedCopies);
  const gradients = 4 * (params + fusedCopies);
  const optimizer = 8 * params;
  const reference = s.reference === 'f32' ? 4 * params : s.reference === 'f16' ? 2 * params : 0;
  const perLayer = N * (8 * d + 3 * (nH + 2 * nKV) * hd + 6 * I) + 3 * s.batch * nH * s.seq * s.seq;
  const layers = s.checkpoint ? L * N * d + perLayer : L * perLayer;
  const headChunk = Math.min(HEAD_CHUNK_BYTES, 4 * N * c.vocab_size) * 3; // logits, softmax, gradient
  const activations = 4 * (layers + 4 * N * d) + headChunk;
  return { params, weights, gradients, optimizer, reference, activations, total: weights + gradients + optimizer + reference + activations };
}

/**
 * Throws GRPO_ERR_MODEL_TOO_LARGE when the estimate plus `engineBytes` (the engine's own buffers,
 * e.g. the native backend's pool) exceeds `limitBytes` (with headroom). `where` names the limit
 * (e.g. "the wasm backend's 4 GB heap" or "24.0 GB of RAM").
 */
export function checkStepFits(c: LlamaConfig, s: StepShape, limitBytes: number, where: string, engineBytes = 0): StepBytes {
  const b = estimateStepBytes(c, s);
  if (b.total + engineBytes <= HEADROOM * limitBytes) return b;
  const knobs = [
    `micro_batch_size (now ${s.batch}; activations scale with it)`,
    s.checkpoint ? null : 'gradient_checkpointing: true (activations to about one layer)',
    'a shorter max_gen_len',
    where.includes('wasm') ? '--backend native (no 4 GB heap)' : null,
  ].filter((k): k is string => k !== null);
  throw new GrpoError(
    'GRPO_ERR_MODEL_TOO_LARGE',
    `one training step of this model (${(b.params / 1e6).toFixed(1)}M parameters, batch ${s.batch} x ${s.seq} tokens) needs about ${gb(b.total + engineBytes)}: ` +
      `weights ${gb(b.weights)}, gradients ${gb(b.gradients)}, AdamW state ${gb(b.optimizer)}, ` +
      (b.reference > 0 ? `reference model ${gb(b.reference)}, ` : '') +
      `activations ${gb(b.activations)}` +
      (engineBytes > 0 ? `, engine buffer pool up to ${gb(engineBytes)}` : '') +
      `; ${where} allows ${gb(HEADROOM * limitBytes)}. Shrink it with: ${knobs.join('; ')}`,
  );
}

function gb(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GB`;
}
