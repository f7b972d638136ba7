/**
 * The Llama decoder forward pass as plain, synchronous TensorFlow.js ops (call inside tf.tidy).
 * Shared by the training forward (full causal sequence) and the KV-cache sampler (prefill and
 * one-token decode steps), so both compute the same numbers.
 *
 * Layout choices, all for few and large ops (per-op overhead is several microseconds):
 * - the residual stream stays 2-D [N = B*T, d], so every projection is a 2-D matMul x W^T;
 * - q, k, v come from one matMul against the concatenated weights, gate and up from another;
 * - one multiply-add rotates q and k, scales q and passes v through (see rope.ts);
 * - grouped-query attention never repeats k/v: the g query heads of a kv group are stacked along
 *   the query-row axis, so scores are one batched matMul [B*nKV, T*g, hd] x [B*nKV, Tk, hd]^T.
 */
import { tf } from '../engine/tf.js';
import { headDim } from './llama-params.js';
import type { RopeCoefs } from './rope.js';
import type { LlamaConfig } from './types.js';

/** One decoder layer's weights with the projections concatenated for fused matMuls. */
export interface FusedLayer {
  inNorm: tf.Tensor1D; // [d]
  wqkv: tf.Tensor2D; // [(nH + 2 nKV) * hd, d]: q_proj; k_proj; v_proj
  wo: tf.Tensor2D; // [d, nH * hd]
  postNorm: tf.Tensor1D; // [d]
  wgu: tf.Tensor2D; // [2 I, d]: gate_proj; up_proj
  wdown: tf.Tensor2D; // [d, I]
}

export interface FusedWeights {
  embed: tf.Tensor2D; // [V, d]
  layers: FusedLayer[];
  norm: tf.Tensor1D; // [d]
  head: tf.Tensor2D; // [V, d]: lm_head.weight, or embed when tied
}

/** Cached keys and values of one layer, rotated, before grouping: [B, nKV, Tk, hd] each. */
export interface LayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/**
 * Builds the fused view of the parameters (by HF name). Differentiable: inside a gradient
 * function the concat's gradient splits back onto each variable.
 */
export function fuseWeights(c: LlamaConfig, p: Map<string, tf.Tensor>): FusedWeights {
  const mat = (name: string): tf.Tensor2D => p.get(name) as tf.Tensor2D;
  const vec = (name: string): tf.Tensor1D => p.get(name) as tf.Tensor1D;
  const layers: FusedLayer[] = [];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `model.layers.${i}`;
    layers.push({
      inNorm: vec(`${n}.input_layernorm.weight`),
      wqkv: tf.concat2d(
        [mat(`${n}.self_attn.q_proj.weight`), mat(`${n}.self_attn.k_proj.weight`), mat(`${n}.self_attn.v_proj.weight`)],
        0,
      ),
      wo: mat(`${n}.self_attn.o_proj.weight`),
      postNorm: vec(`${n}.post_attention_layernorm.weight`),
      wgu: tf.concat2d([mat(`${n}.mlp.gate_proj.weight`), mat(`${n}.mlp.up_proj.weight`)], 0),
      wdown: mat(`${n}.mlp.down_proj.weight`),
    });
  }
  const embed = mat('model.embed_tokens.weight');
  const head = c.tie_word_embeddings ? embed : mat('lm_head.weight');
  return { embed, layers, norm: vec('model.norm.weight'), head };
}

/** The tensors fuseWeights created (concats), to dispose when a fused view is kept outside tidy. */
export function fusedOwned(w: FusedWeights): tf.Tensor[] {
  return w.layers.flatMap((l) => [l.wqkv, l.wgu]);
}

/**
 * RMSNorm x * rsqrt(mean(x^2) + eps) * w over the last axis, float32. x [N, d], w [d].
 * With a hand-written gradient: autodiff through rsqrt and mean costs about 20 small ops (Pow,
 * RealDiv, Cast among them); this one is 7, with r = rsqrt(mean(x^2) + eps), xr = x * r:
 *   dx = r * (g - xr * mean(g * xr)),  g = dy * w;   dw = sum_rows(dy * xr).
 */
export function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  const norm = tf.customGrad((...args) => {
    const [xIn, wIn, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const r = xIn.mul(xIn).mean(-1, true).add(eps).rsqrt(); // [N, 1]
    const xr = xIn.mul(r); // [N, d]
    save([wIn, r, xr]);
    return {
      value: xr.mul(wIn),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ws, rs, xrs] = saved;
        const g = dy.mul(ws); // [N, d]
        const dx = g.sub(xrs.mul(g.mul(xrs).mean(-1, true))).mul(rs);
        return [dx, dy.mul(xrs).sum(0)];
      },
    };
  });
  return norm(x, w) as tf.Tensor2D;
}

/** ids [B, T] int32 -> token embeddings [B*T, d]. */
export function embed(w: FusedWeights, ids: tf.Tensor2D): tf.Tensor2D {
  return tf.gather(w.embed, ids.reshape([-1]));
}

/** Final RMSNorm and lm_head (or tied embeddings): h [N, d] -> logits [N, V]. */
export function headLogits(c: LlamaConfig, w: FusedWeights, h: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(rmsNorm(h, w.norm, c.rms_norm_eps), w.head, false, true);
}

/**
 * Runs every decoder layer on the residual stream h [B*T, d] and returns the new stream and each
 * layer's keys/values (including `past`, when given, in front of this call's T positions).
 * `mask` is additive, broadcastable to [B, nKV, T*g, Tk] (see RopeTables.causal).
 */
export function decoderLayers(
  c: LlamaConfig,
  w: FusedWeights,
  h: tf.Tensor2D,
  B: number,
  T: number,
  rope: RopeCoefs,
  mask: tf.Tensor4D,
  past?: LayerKV[],
): { h: tf.Tensor2D; kv: LayerKV[] } {
  const kv: LayerKV[] = [];
  for (let i = 0; i < w.layers.length; i++) {
    const L = w.layers[i];
    const att = attention(c, L, rmsNorm(h, L.inNorm, c.rms_norm_eps), B, T, rope, mask, past?.[i]);
    kv.push(att.kv);
    h = h.add(tf.matMul(att.out, L.wo, false, true));
    h = h.add(mlp(L, rmsNorm(h, L.postNorm, c.rms_norm_eps)));
  }
  return { h, kv };
}

/** SwiGLU: down(silu(gate(x)) * up(x)). x [N, d] -> [N, d]. */
function mlp(L: FusedLayer, x: tf.Tensor2D): tf.Tensor2D {
  const [gate, up] = tf.split(tf.matMul(x, L.wgu, false, true), 2, 1); // [N, I] each
  return tf.matMul(gate.mul(tf.sigmoid(gate)).mul(up), L.wdown, false, true);
}

/** Causal self-attention of x [B*T, d] -> out [B*T, nH*hd], plus this layer's keys/values. */
function attention(
  c: LlamaConfig,
  L: FusedLayer,
  x: tf.Tensor2D,
  B: number,
  T: number,
  rope: RopeCoefs,
  mask: tf.Tensor4D,
  past?: LayerKV,
): { out: tf.Tensor2D; kv: LayerKV } {
  const hd = headDim(c);
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const g = nH / nKV;
  const heads = nH + 2 * nKV;
  const qkv = tf.matMul(x, L.wqkv, false, true).reshape([B, T, heads, hd]);
  // rotate q and k, scale q by 1/sqrt(hd), pass v through: [B, T, H'', hd]
  const swapped = tf.reverse(qkv.reshape([B * T * heads, 2, hd / 2]), 1).reshape([B, T, heads, hd]);
  const rotated = qkv.mul(rope.cos).add(swapped.mul(rope.sin));
  const [q, kNew, vNew] = tf.split(rotated, [nH, nKV, nKV], 2);
  let k = headsFirst(kNew as tf.Tensor4D); // [B, nKV, T, hd]
  let v = headsFirst(vNew as tf.Tensor4D);
  if (past) {
    k = tf.concat([past.k, k], 2); // [B, nKV, Tk, hd]
    v = tf.concat([past.v, v], 2);
  }
  const Tk = k.shape[2];
  // query heads of one kv group side by side, then stacked as rows (t, j): [B*nKV, T*g, hd]
  const qg = headsFirst(q.reshape([B, T, nKV, g * hd])).reshape([B * nKV, T * g, hd]);
  const scores = tf.matMul(qg, k.reshape([B * nKV, Tk, hd]), false, true); // [B*nKV, T*g, Tk]
  const probs = tf.softmax(scores.reshape([B, nKV, T * g, Tk]).add(mask)).reshape([B * nKV, T * g, Tk]);
  const ctx = tf.matMul(probs, v.reshape([B * nKV, Tk, hd])); // [B*nKV, T*g, hd]
  const out = seqFirst(ctx.reshape([B, nKV, T, g * hd])).reshape<tf.Tensor2D>([B * T, nH * hd]);
  return { out, kv: { k, v } };
}

/** [B, T, H, w] -> [B, H, T, w]; a free reshape when T = 1 (decode steps). */
function headsFirst(x: tf.Tensor4D): tf.Tensor4D {
  const [B, T, H, w] = x.shape;
  return T === 1 ? x.reshape([B, H, 1, w]) : x.transpose([0, 2, 1, 3]);
}

/** [B, H, T, w] -> [B, T, H, w]; a free reshape when T = 1. */
function seqFirst(x: tf.Tensor4D): tf.Tensor4D {
  const [B, H, T, w] = x.shape;
  return T === 1 ? x.reshape([B, 1, H, w]) : x.transpose([0, 2, 1, 3]);
}
