/**
 * The decoder forward pass of every supported family (Llama, Qwen2, Qwen3, Gemma2) as plain,
 * synchronous TensorFlow.js ops (call inside tf.tidy); what differs between families is the
 * `Arch` switches of architecture.ts. Shared by the training forward (full causal sequence) and
 * the KV-cache sampler (prefill and one-token decode steps), so both compute the same numbers.
 *
 * Layout choices, all for few and large ops (per-op overhead is several microseconds):
 * - the residual stream stays 2-D [N = B*T, d], so every projection is a 2-D matMul x W^T;
 * - q, k, v come from one matMul against the concatenated weights (and biases), gate and up from
 *   another;
 * - one multiply-add rotates q and k, scales q and passes v through (see rope.ts);
 * - grouped-query attention never repeats k/v: the g query heads of a kv group are stacked along
 *   the query-row axis, so scores are one batched matMul [B*nKV, T*g, hd] x [B*nKV, Tk, hd]^T.
 */
import { fusedRmsNorm, fusedRope, swiglu } from '../engine/fused-ops.js';
import { tf } from '../engine/tf.js';
import { archOf, headDim, type Arch } from './architecture.js';
import { loraLayer, sideTerm, type LoraLayer, type LoraProj, type LoraSideSpec } from './lora-side.js';
import { checkpointedLayer } from './recompute.js';
import type { LayerMasks, RopeCoefs } from './rope.js';
import type { ModelConfig } from './types.js';

/** One decoder layer's weights with the projections concatenated for fused matMuls. */
export interface FusedLayer {
  inNorm: tf.Tensor1D; // [d]: input_layernorm (Gemma: 1 + weight)
  wqkv: tf.Tensor2D; // [(nH + 2 nKV) * hd, d]: q_proj; k_proj; v_proj
  bqkv: tf.Tensor1D | null; // [(nH + 2 nKV) * hd]: their biases (Qwen2, attention_bias)
  qNorm: tf.Tensor1D | null; // [hd]: Qwen3's q_norm, applied to each query head before RoPE
  kNorm: tf.Tensor1D | null; // [hd]: Qwen3's k_norm
  wo: tf.Tensor2D; // [d, nH * hd]
  bo: tf.Tensor1D | null; // [d]
  attnOutNorm: tf.Tensor1D | null; // [d]: Gemma2's post_attention_layernorm, on the attention output
  mlpNorm: tf.Tensor1D; // [d]: the norm before the MLP (Llama/Qwen post_attention_layernorm, Gemma2 pre_feedforward_layernorm)
  mlpOutNorm: tf.Tensor1D | null; // [d]: Gemma2's post_feedforward_layernorm, on the MLP output
  wgu: tf.Tensor2D; // [2 I, d]: gate_proj; up_proj
  bgu: tf.Tensor1D | null; // [2 I] (mlp_bias)
  wdown: tf.Tensor2D; // [d, I]
  bdown: tf.Tensor1D | null; // [d]
  window: number | null; // sliding-window length of this layer, null = full causal attention
  lora: LoraLayer | null; // LoRA adapters beside the frozen weights (lora-side.ts); null: none or merged
}

export interface FusedWeights {
  arch: Arch;
  embed: tf.Tensor2D; // [V, d]
  layers: FusedLayer[];
  norm: tf.Tensor1D; // [d] (Gemma: 1 + weight)
  head: tf.Tensor2D; // [V, d]: lm_head.weight, or embed when tied
  owned: tf.Tensor[]; // what fuseWeights created (concats, 1 + w), see fusedOwned
}

/** Cached keys and values of one layer, rotated, before grouping: [B, nKV, Tk, hd] each. */
export interface LayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/**
 * Builds the fused view of the parameters (by HF name). Differentiable: inside a gradient
 * function the concat's gradient splits back onto each variable. With `side`, LoRA adapters run
 * beside the (unmerged) weights in `p` (lora-side.ts).
 */
export function fuseWeights(c: ModelConfig, p: Map<string, tf.Tensor>, side?: LoraSideSpec): FusedWeights {
  const arch = archOf(c);
  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  const mat = (name: string): tf.Tensor2D => p.get(name) as tf.Tensor2D;
  const vec = (name: string): tf.Tensor1D => p.get(name) as tf.Tensor1D;
  // RMSNorm multiplies by (1 + w) in Gemma: add the 1 once per fused view, not once per call
  const norm = (name: string): tf.Tensor1D => (arch.normOffset === 0 ? vec(name) : own(vec(name).add<tf.Tensor1D>(arch.normOffset)));
  const layers: FusedLayer[] = [];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `model.layers.${i}`;
    const a = `${n}.self_attn`;
    const bias = (names: string[], on: boolean): tf.Tensor1D | null =>
      on ? (names.length === 1 ? vec(names[0]) : own(tf.concat1d(names.map(vec)))) : null;
    layers.push({
      inNorm: norm(`${n}.input_layernorm.weight`),
      wqkv: own(tf.concat2d([mat(`${a}.q_proj.weight`), mat(`${a}.k_proj.weight`), mat(`${a}.v_proj.weight`)], 0)),
      bqkv: bias([`${a}.q_proj.bias`, `${a}.k_proj.bias`, `${a}.v_proj.bias`], arch.qkvBias),
      qNorm: arch.qkNorm ? vec(`${a}.q_norm.weight`) : null,
      kNorm: arch.qkNorm ? vec(`${a}.k_norm.weight`) : null,
      wo: mat(`${a}.o_proj.weight`),
      bo: bias([`${a}.o_proj.bias`], arch.oBias),
      attnOutNorm: arch.sandwich ? norm(`${n}.post_attention_layernorm.weight`) : null,
      mlpNorm: norm(arch.sandwich ? `${n}.pre_feedforward_layernorm.weight` : `${n}.post_attention_layernorm.weight`),
      mlpOutNorm: arch.sandwich ? norm(`${n}.post_feedforward_layernorm.weight`) : null,
      wgu: own(tf.concat2d([mat(`${n}.mlp.gate_proj.weight`), mat(`${n}.mlp.up_proj.weight`)], 0)),
      bgu: bias([`${n}.mlp.gate_proj.bias`, `${n}.mlp.up_proj.bias`], arch.mlpBias),
      wdown: mat(`${n}.mlp.down_proj.weight`),
      bdown: bias([`${n}.mlp.down_proj.bias`], arch.mlpBias),
      window: arch.windows[i],
      lora: side ? loraLayer(side, i) : null,
    });
  }
  const embed = mat('model.embed_tokens.weight');
  const head = c.tie_word_embeddings ? embed : mat('lm_head.weight');
  return { arch, embed, layers, norm: norm('model.norm.weight'), head, owned };
}

/** The tensors fuseWeights created (concats, 1 + w), to dispose when a fused view is kept outside tidy. */
export function fusedOwned(w: FusedWeights): tf.Tensor[] {
  return w.owned;
}

/**
 * RMSNorm x * rsqrt(mean(x^2) + eps) * w over the last axis, float32. x [N, d], w [d].
 * With a hand-written gradient: autodiff through rsqrt and mean costs about 20 small ops (Pow,
 * RealDiv, Cast among them); this one is 7, with r = rsqrt(mean(x^2) + eps), xr = x * r:
 *   dx = r * (g - xr * mean(g * xr)),  g = dy * w;   dw = sum_rows(dy * xr).
 */
export function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  const fused = fusedRmsNorm(x, w, eps); // one kernel each way where the backend has it
  if (fused) return fused;
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

/** ids [B, T] int32 -> token embeddings [B*T, d] (Gemma: times sqrt(d)). */
export function embed(w: FusedWeights, ids: tf.Tensor2D): tf.Tensor2D {
  const x = tf.gather(w.embed, ids.reshape([-1])) as tf.Tensor2D;
  return w.arch.embedScale === 1 ? x : x.mul(w.arch.embedScale);
}

/** Final RMSNorm and lm_head (or tied embeddings), soft-capped where the family does: h [N, d] -> logits [N, V]. */
export function headLogits(c: ModelConfig, w: FusedWeights, h: tf.Tensor2D): tf.Tensor2D {
  const z = tf.matMul<tf.Tensor2D>(rmsNorm(h, w.norm, c.rms_norm_eps), w.head, false, true);
  const cap = w.arch.finalSoftcap;
  return cap === null ? z : tf.tanh(z.mul(1 / cap)).mul(cap) as tf.Tensor2D;
}

/**
 * Runs every decoder layer on the residual stream h [B*T, d] and returns the new stream and each
 * layer's keys/values (including `past`, when given, in front of this call's T positions).
 * `masks` are additive, broadcastable to [B, nKV, T*g, Tk] (see RopeTables.masks / stepMasks);
 * a layer with a sliding window takes `masks.sliding`.
 * With `checkpoint` (training, no past) each layer is recomputed in backward and no kv is returned.
 */
export function decoderLayers(
  c: ModelConfig,
  w: FusedWeights,
  h: tf.Tensor2D,
  B: number,
  T: number,
  rope: RopeCoefs,
  masks: LayerMasks,
  past?: LayerKV[],
  checkpoint = false,
): { h: tf.Tensor2D; kv: LayerKV[] } {
  const kv: LayerKV[] = [];
  for (let i = 0; i < w.layers.length; i++) {
    const L = w.layers[i];
    const mask = L.window === null ? masks.full : (masks.sliding as tf.Tensor4D);
    if (checkpoint && !past) {
      // training only: recomputed in backward (recompute.ts); keys/values are not kept
      h = checkpointedLayer((x, Lx, r, m) => decoderLayer(c, w.arch, Lx, x, B, T, r, m).h, h, L, rope, mask);
      continue;
    }
    const out = decoderLayer(c, w.arch, L, h, B, T, rope, mask, past?.[i]);
    kv.push(out.kv);
    h = out.h;
  }
  return { h, kv };
}

/**
 * One decoder layer: h [B*T, d] -> h [B*T, d] and its keys/values. Pre-norm residual blocks;
 * Gemma2 also norms each block's output before adding it (the "sandwich" norms).
 */
export function decoderLayer(
  c: ModelConfig,
  arch: Arch,
  L: FusedLayer,
  h: tf.Tensor2D,
  B: number,
  T: number,
  rope: RopeCoefs,
  mask: tf.Tensor4D,
  past?: LayerKV,
): { h: tf.Tensor2D; kv: LayerKV } {
  const eps = c.rms_norm_eps;
  const att = attention(c, arch, L, rmsNorm(h, L.inNorm, eps), B, T, rope, mask, past);
  let a = project(L, 'o', att.out, L.wo, L.bo, [c.hidden_size]);
  if (L.attnOutNorm !== null) a = rmsNorm(a, L.attnOutNorm, eps);
  h = h.add(a);
  let m = mlp(arch, L, rmsNorm(h, L.mlpNorm, eps));
  if (L.mlpOutNorm !== null) m = rmsNorm(m, L.mlpOutNorm, eps);
  return { h: h.add(m), kv: att.kv };
}

/** x W^T (+ b): [N, in] -> [N, out]. */
function linear(x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D | null): tf.Tensor2D {
  const y = tf.matMul<tf.Tensor2D>(x, W, false, true);
  return b === null ? y : y.add<tf.Tensor2D>(b);
}

/** A fused projection plus its LoRA side term when the layer has one; `outs` are its slots' widths. */
function project(L: FusedLayer, proj: LoraProj, x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D | null, outs: number[]): tf.Tensor2D {
  const y = linear(x, W, b);
  const side = sideTerm(L.lora, proj, x, outs);
  return side === null ? y : y.add<tf.Tensor2D>(side);
}

/** Gated MLP: down(act(gate(x)) * up(x)), SwiGLU (SiLU) or GeGLU (tanh GELU). x [N, d] -> [N, d]. */
function mlp(arch: Arch, L: FusedLayer, x: tf.Tensor2D): tf.Tensor2D {
  const I = L.wdown.shape[1];
  const gu = project(L, 'gu', x, L.wgu, L.bgu, [I, I]); // [N, 2I]: gate columns, then up
  const down = (h: tf.Tensor2D): tf.Tensor2D => project(L, 'down', h, L.wdown, L.bdown, [L.wdown.shape[0]]);
  if (arch.act === 'silu') return down(swiglu(gu)); // fused where the backend has it
  const [gate, up] = tf.split(gu, 2, 1); // [N, I] each
  return down(geluTanh(gate).mul(up) as tf.Tensor2D);
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), x^3 as products (no Pow). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(GELU_C);
  return x.mul(0.5).mul(tf.tanh(inner).add(1));
}

/** Causal self-attention of x [B*T, d] -> out [B*T, nH*hd], plus this layer's keys/values. */
function attention(
  c: ModelConfig,
  arch: Arch,
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
  let qkv = project(L, 'qkv', x, L.wqkv, L.bqkv, [nH * hd, nKV * hd, nKV * hd]).reshape<tf.Tensor4D>([B, T, heads, hd]);
  if (L.qNorm !== null && L.kNorm !== null) qkv = headNorms(c, L.qNorm, L.kNorm, qkv);
  // rotate q and k, scale q (see rope.ts), pass v through: [B, T, H'', hd]
  const rotated = fusedRope(qkv, rope.cos, rope.sin) ?? rotateComposed(qkv, rope, B, T, heads, hd); // one kernel where the backend has it
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
  let scores = tf.matMul(qg, k.reshape([B * nKV, Tk, hd]), false, true); // [B*nKV, T*g, Tk]
  // soft-capping: q already carries 1 / cap (rope.ts), so cap * tanh(q.k * scale / cap)
  if (arch.attnSoftcap !== null) scores = tf.tanh(scores).mul<tf.Tensor3D>(arch.attnSoftcap);
  const probs = tf.softmax(scores.reshape([B, nKV, T * g, Tk]).add(mask)).reshape([B * nKV, T * g, Tk]);
  const ctx = tf.matMul(probs, v.reshape([B * nKV, Tk, hd])); // [B*nKV, T*g, hd]
  const out = seqFirst(ctx.reshape([B, nKV, T, g * hd])).reshape<tf.Tensor2D>([B * T, nH * hd]);
  return { out, kv: { k, v } };
}

/** x cos + swap(x) sin from stock ops (swap: the halves of the last axis exchanged). x [B, T, H'', hd]. */
function rotateComposed(qkv: tf.Tensor4D, rope: RopeCoefs, B: number, T: number, heads: number, hd: number): tf.Tensor4D {
  const swapped = tf.reverse(qkv.reshape([B * T * heads, 2, hd / 2]), 1).reshape([B, T, heads, hd]);
  return qkv.mul(rope.cos).add(swapped.mul(rope.sin));
}

/** Qwen3's per-head RMSNorm of queries (q_norm) and keys (k_norm) over head_dim; v untouched. */
function headNorms(c: ModelConfig, qNorm: tf.Tensor1D, kNorm: tf.Tensor1D, qkv: tf.Tensor4D): tf.Tensor4D {
  const [B, T, heads, hd] = qkv.shape;
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const [q, k, v] = tf.split(qkv, [nH, nKV, nKV], 2);
  const qn = rmsNorm(q.reshape([-1, hd]), qNorm, c.rms_norm_eps).reshape([B, T, nH, hd]);
  const kn = rmsNorm(k.reshape([-1, hd]), kNorm, c.rms_norm_eps).reshape([B, T, nKV, hd]);
  return tf.concat([qn, kn, v], 2).reshape([B, T, heads, hd]);
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
