/**
 * A training forward that runs a prompt shared by several rows once. In GRPO every prompt is
 * sampled group_size times, and under causal attention a prompt's hidden states and keys/values
 * do not depend on what follows it, so the G rows of a group would compute the same prompt
 * positions G times. Here the distinct prompts run as a batch of their own (prefill), their
 * keys/values are gathered to the rows that continue them, and only the completion positions run
 * per row, attending to the gathered prompt keys as to a KV cache. In backward the gather's
 * gradient sums the rows' gradients into their shared prompt (tf.gather's gradient is a segment
 * sum), so values and gradients equal the full forward's up to float rounding; the work on
 * prompt positions shrinks by the group size.
 *
 * Layout (learner/batch.ts): every row holds its prompt in columns [0, P), left-padded, and its
 * completion from column P on, right-padded; `leftPad` counts each row's leading pad columns.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import type { AllowedMask } from './allowed-mask.js';
import { decoderLayers, embed, type FusedWeights } from './llama-forward.js';
import type { RopeTables } from './rope.js';
import type { ModelConfig } from './types.js';

/** Rows of a [B, T] batch whose first P columns are a prompt that several rows share. */
export interface SharedPrefix {
  length: number; // P: the prompt columns; the completion starts at column P (1 <= P < T)
  rows: Int32Array; // [Bp] one row holding each distinct prompt
  promptOf: Int32Array; // [B] each row's prompt, an index into `rows`
}

/**
 * The distinct prompts of a batch laid out as above: rows with equal ids in columns [0, P)
 * share one. `ids` row-major [B, T].
 */
export function findSharedPrefix(ids: Int32Array, B: number, T: number, P: number): SharedPrefix {
  const first = new Map<string, number>();
  const rows: number[] = [];
  const promptOf = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const key = ids.subarray(b * T, b * T + P).join(',');
    let i = first.get(key);
    if (i === undefined) {
      i = rows.length;
      first.set(key, i);
      rows.push(b);
    }
    promptOf[b] = i;
  }
  return { length: P, rows: Int32Array.from(rows), promptOf };
}

/** GRPO_ERR_MODEL_INPUT unless `prefix` describes a [B, T] batch. */
export function checkSharedPrefix(prefix: SharedPrefix, B: number, T: number): void {
  const { length: P, rows, promptOf } = prefix;
  const bad = (why: string): GrpoError => new GrpoError('GRPO_ERR_MODEL_INPUT', `shared prefix: ${why}`);
  if (!Number.isInteger(P) || P < 1 || P >= T) throw bad(`length ${P} must be in [1, ${T - 1}] for ${T} columns`);
  if (promptOf.length !== B) throw bad(`promptOf has ${promptOf.length} rows, the batch ${B}`);
  if (rows.length < 1 || rows.length > B || !rows.every((r) => r >= 0 && r < B)) throw bad(`rows must be ${B > 0 ? `1-${B}` : 'no'} row indices below ${B}`);
  if (!promptOf.every((i) => i >= 0 && i < rows.length)) throw bad(`promptOf entries must index the ${rows.length} prompt rows`);
}

/**
 * Hidden states (before the final norm) at the positions that predict columns P .. T-1, i.e.
 * positions P-1 .. T-2 of each row: [B * (T - P), d]. Synchronous; call inside tf.tidy.
 */
export function prefixHidden(
  c: ModelConfig,
  rope: RopeTables,
  w: FusedWeights,
  ids: tf.Tensor2D,
  leftPad: ArrayLike<number>,
  prefix: SharedPrefix,
): tf.Tensor2D {
  const [B, T] = ids.shape;
  const P = prefix.length;
  const C = T - P;
  const Bp = prefix.rows.length;
  const d = c.hidden_size;
  const padP = Int32Array.from(prefix.rows, (r) => leftPad[r]);
  // the distinct prompts: a prefill over P columns, keeping every layer's keys and values
  const idsP = tf.gather(ids.slice([0, 0], [B, P]), tf.tensor1d(prefix.rows, 'int32')) as tf.Tensor2D; // [Bp, P]
  const pre = decoderLayers(c, w, embed(w, idsP), Bp, P, rope.gathered(positions(padP, 0, P), Bp, P), rope.masks(P, padP));
  const sel = tf.tensor1d(prefix.promptOf, 'int32');
  const past = pre.kv.map(({ k, v }) => ({ k: tf.gather(k, sel) as tf.Tensor4D, v: tf.gather(v, sel) as tf.Tensor4D })); // [B, nKV, P, hd]
  // the completions: C columns per row after the gathered prompt keys
  const idsC = ids.slice([0, P], [B, C]);
  const post = decoderLayers(c, w, embed(w, idsC), B, C, rope.gathered(positions(leftPad, P, T), B, C), rope.masks(T, leftPad, P), past).h; // [B*C, d]
  const last = tf.gather(pre.h.reshape([Bp, P, d]).slice([0, P - 1, 0], [Bp, 1, d]), sel); // [B, 1, d]: predicts column P
  if (C === 1) return last.reshape([B, d]);
  const rest = post.reshape([B, C, d]).slice([0, 0, 0], [B, C - 1, d]); // predict columns P+1 .. T-1
  return tf.concat([last, rest], 1).reshape([B * C, d]);
}

/** Rotary positions of columns [from, to) of each row: the column minus the row's left padding. */
function positions(leftPad: ArrayLike<number>, from: number, to: number): Int32Array {
  const B = leftPad.length;
  const n = to - from;
  const pos = new Int32Array(B * n);
  for (let b = 0; b < B; b++) for (let t = 0; t < n; t++) pos[b * n + t] = Math.max(0, from + t - leftPad[b]);
  return pos;
}

/** The part of a [B, T - 1]-position grammar mask at positions P-1 .. T-2 of each row: B * (T - P) positions. */
export function allowedFrom(mask: AllowedMask, B: number, T: number, P: number): AllowedMask {
  const K = mask.width;
  const C = T - P;
  const ids = new Int32Array(B * C * K);
  const valid = new Float32Array(B * C * K);
  const constrained = new Float32Array(B * C);
  for (let b = 0; b < B; b++) {
    const src = b * (T - 1) + P - 1;
    ids.set(mask.ids.subarray(src * K, (src + C) * K), b * C * K);
    valid.set(mask.valid.subarray(src * K, (src + C) * K), b * C * K);
    constrained.set(mask.constrained.subarray(src, src + C), b * C);
  }
  return { width: K, ids, valid, constrained };
}
