/**
 * Position tables of one model: rotary-embedding cos/sin rows and the additive causal mask.
 * They are built on the host once, kept as tensors, and grown (doubling, up to
 * max_position_embeddings) the first time a longer sequence arrives, so a model with a large
 * max_position_embeddings does not pay for a [P, P] mask it never uses.
 *
 * Rotary embeddings follow Hugging Face's "rotate_half" convention:
 *   inv_freq[i] = 1 / theta^(2i / hd),  angle = pos * inv_freq  (float32, as HF computes it)
 *   cos = cos([angle, angle]),  x_rot = x * cos + rotate_half(x) * sin,
 *   rotate_half([x1, x2]) = [-x2, x1].
 * We compute rotate_half(x) * sin as reverse_halves(x) * sinSigned, sinSigned = [-sin1, +sin2],
 * which is one Reverse op instead of two slices, a negation and a concat.
 *
 * rope_scaling (linear, llama3) only changes inv_freq, as in transformers' rope init functions.
 *
 * The fused q/k/v projection output has H'' = nH + 2 nKV heads. The per-head coefficients
 * `a` and `b` turn the plain tables into [.., H'', hd] coefficients so one multiply-add rotates q
 * and k, scales q by s (the attention scale, applied where the tensor is smallest) and
 * leaves v unchanged (cos 1, sin 0):
 *   cosX = cos * a + b,  sinX = sinSigned * a,  a = [s.. (q), 1.. (k), 0.. (v)],  b = [0.., 0.., 1..].
 * s is the family's query scale (1/sqrt(hd), Gemma2: query_pre_attn_scalar^-1/2), divided by the
 * attention soft-cap when there is one, so the scores arrive as (q.k * scale) / cap, ready for tanh.
 *
 * The masks: `causal` lets query i see keys j <= i; `sliding` (Gemma2's windowed layers)
 * further hides keys with i - j >= sliding_window, as transformers' sliding-window mask does.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import { archOf, headDim } from './architecture.js';
import type { ModelConfig, RopeScaling } from './types.js';

/** Added to attention scores of masked keys. Finite, so a fully masked (padding) row gives no NaN. */
export const MASKED = -1e9;

const MIN_CAPACITY = 64;

export interface RopeCoefs {
  cos: tf.Tensor4D; // [Bc, T, H'', hd], Bc = 1 or B
  sin: tf.Tensor4D; // [Bc, T, H'', hd]
}

export class RopeTables {
  private readonly hd: number;
  private readonly group: number; // query heads per kv head
  private readonly a: tf.Tensor2D; // [H'', 1]
  private readonly b: tf.Tensor2D; // [H'', 1]
  private cosT: tf.Tensor2D | null = null; // [P, hd]
  private sinT: tf.Tensor2D | null = null; // [P, hd], signed: first half negated
  private causalT: tf.Tensor2D | null = null; // [P, P], 0 on and below the diagonal, MASKED above
  private slidingT: tf.Tensor2D | null = null; // [P, P], causalT also MASKED where i - j >= window
  private capacity = 0;
  /** The sliding-window length of the windowed layers, or null when every layer sees all keys. */
  readonly window: number | null;

  constructor(private readonly config: ModelConfig) {
    this.hd = headDim(config);
    const arch = archOf(config);
    this.window = arch.windows.find((w) => w !== null) ?? null;
    const nH = config.num_attention_heads;
    const nKV = config.num_key_value_heads;
    this.group = nH / nKV;
    const heads = nH + 2 * nKV;
    const a = new Float32Array(heads);
    const b = new Float32Array(heads);
    const scale = arch.queryScale / (arch.attnSoftcap ?? 1);
    for (let h = 0; h < heads; h++) {
      if (h < nH) a[h] = scale;
      else if (h < nH + nKV) a[h] = 1;
      else b[h] = 1;
    }
    // kept: a model may be built, or its tables grown, inside a caller's tf.tidy
    this.a = tf.keep(tf.tensor2d(a, [heads, 1]));
    this.b = tf.keep(tf.tensor2d(b, [heads, 1]));
  }

  /** Makes the tables cover positions [0, n). Throws GRPO_ERR_SEQUENCE_TOO_LONG past the limit. */
  ensure(n: number): void {
    const limit = this.config.max_position_embeddings;
    if (n > limit) {
      throw new GrpoError(
        'GRPO_ERR_SEQUENCE_TOO_LONG',
        `sequence of ${n} tokens exceeds max_position_embeddings ${limit}; shorten prompts or max new tokens`,
      );
    }
    if (n <= this.capacity) return;
    let cap = Math.max(MIN_CAPACITY, this.capacity);
    while (cap < n) cap *= 2;
    cap = Math.min(cap, limit);
    this.build(cap);
  }

  /** cos/sin coefficients for positions 0..T-1, shared by every row: [1, T, H'', hd]. */
  contiguous(T: number): RopeCoefs {
    this.ensure(T);
    const hd = this.hd;
    const cos = (this.cosT as tf.Tensor2D).slice([0, 0], [T, hd]).reshape<tf.Tensor4D>([1, T, 1, hd]);
    const sin = (this.sinT as tf.Tensor2D).slice([0, 0], [T, hd]).reshape<tf.Tensor4D>([1, T, 1, hd]);
    return this.expand(cos, sin);
  }

  /** cos/sin coefficients for explicit positions, `positions` row-major [B, T]: [B, T, H'', hd]. */
  gathered(positions: Int32Array, B: number, T: number): RopeCoefs {
    let max = 0;
    for (const p of positions) max = Math.max(max, p);
    this.ensure(max + 1);
    const idx = tf.tensor1d(positions, 'int32');
    const cos = tf.gather(this.cosT as tf.Tensor2D, idx).reshape<tf.Tensor4D>([B, T, 1, this.hd]);
    const sin = tf.gather(this.sinT as tf.Tensor2D, idx).reshape<tf.Tensor4D>([B, T, 1, this.hd]);
    return this.expand(cos, sin);
  }

  /**
   * Additive causal mask for a full forward over T tokens, laid out for grouped-query attention
   * (query rows ordered (t, j) with j the query head within its kv group): [Bm, 1, T*g, T].
   * `leftPad[b]` leading keys of row b are masked too (left-padded batches); Bm = 1 without it.
   */
  causal(T: number, leftPad?: ArrayLike<number>, sliding = false, from = 0): tf.Tensor4D {
    this.ensure(T);
    const table = sliding ? this.slidingTable() : (this.causalT as tf.Tensor2D);
    const Tq = T - from; // query rows: positions from .. T-1 (a continuation after `from` cached keys)
    let mask: tf.Tensor3D = table.slice([from, 0], [Tq, T]).reshape([1, Tq, T]);
    if (leftPad) mask = mask.add(keyPadMask(leftPad, T).reshape([leftPad.length, 1, T]));
    return expandGroups(mask, this.group);
  }

  /**
   * The masks of a full forward (or prefill) over T tokens: `full` for every layer, `sliding`
   * for the windowed ones (null when the model has none). See `causal` for the layout. With
   * `from` > 0, the masks of positions from .. T-1 only, whose keys 0 .. from-1 come from a cache
   * ([Bm, 1, (T - from) * g, T]).
   */
  masks(T: number, leftPad?: ArrayLike<number>, from = 0): LayerMasks {
    return { full: this.causal(T, leftPad, false, from), sliding: this.window === null ? null : this.causal(T, leftPad, true, from) };
  }

  /**
   * The masks of one decode step whose query sits at cache index Tk - 1: padding keys hidden
   * ([B, 1, 1, Tk]), and for windowed layers also the keys at index < Tk - window.
   */
  stepMasks(leftPad: ArrayLike<number>, Tk: number): LayerMasks {
    const B = leftPad.length;
    const full = keyPadMask(leftPad, Tk).reshape<tf.Tensor4D>([B, 1, 1, Tk]);
    if (this.window === null || Tk <= this.window) return { full, sliding: this.window === null ? null : full };
    const m = new Float32Array(Tk).fill(MASKED, 0, Tk - this.window);
    return { full, sliding: full.add<tf.Tensor4D>(tf.tensor4d(m, [1, 1, 1, Tk])) };
  }

  dispose(): void {
    tf.dispose([this.a, this.b]);
    this.disposeTables();
  }

  private expand(cos: tf.Tensor4D, sin: tf.Tensor4D): RopeCoefs {
    return { cos: cos.mul(this.a).add(this.b), sin: sin.mul(this.a) };
  }

  private build(cap: number): void {
    const hd = this.hd;
    const half = hd / 2;
    const invFreq = inverseFrequencies(hd, this.config.rope_theta, this.config.rope_scaling ?? null);
    const cos = new Float32Array(cap * hd);
    const sin = new Float32Array(cap * hd);
    for (let p = 0; p < cap; p++) {
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(p * invFreq[i]);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        cos[p * hd + i] = c;
        cos[p * hd + half + i] = c;
        sin[p * hd + i] = -s;
        sin[p * hd + half + i] = s;
      }
    }
    const causal = new Float32Array(cap * cap);
    for (let q = 0; q < cap; q++) causal.fill(MASKED, q * cap + q + 1, (q + 1) * cap);
    this.disposeTables();
    this.cosT = tf.keep(tf.tensor2d(cos, [cap, hd]));
    this.sinT = tf.keep(tf.tensor2d(sin, [cap, hd]));
    this.causalT = tf.keep(tf.tensor2d(causal, [cap, cap]));
    this.capacity = cap;
  }

  /** causalT with the window applied, built on first use after each growth. */
  private slidingTable(): tf.Tensor2D {
    if (this.slidingT !== null) return this.slidingT;
    const cap = this.capacity;
    const w = this.window ?? cap;
    const m = new Float32Array(cap * cap);
    for (let q = 0; q < cap; q++) {
      m.fill(MASKED, q * cap, q * cap + Math.max(0, q - w + 1)); // keys j <= q - w
      m.fill(MASKED, q * cap + q + 1, (q + 1) * cap);
    }
    this.slidingT = tf.keep(tf.tensor2d(m, [cap, cap]));
    return this.slidingT;
  }

  private disposeTables(): void {
    for (const t of [this.cosT, this.sinT, this.causalT, this.slidingT]) t?.dispose();
    this.cosT = this.sinT = this.causalT = this.slidingT = null;
  }
}

/** Additive attention masks per kind of layer; a layer with a window uses `sliding`. */
export interface LayerMasks {
  full: tf.Tensor4D;
  sliding: tf.Tensor4D | null;
}

/**
 * inv_freq[i] = 1 / theta^(2i / hd) in float32 as transformers computes it, then rescaled:
 * linear divides by factor; llama3 (transformers' _compute_llama3_parameters) divides the
 * frequencies whose wavelength exceeds original_max / low_freq_factor by factor, keeps those
 * shorter than original_max / high_freq_factor, and interpolates smoothly in between.
 */
export function inverseFrequencies(hd: number, theta: number, scaling: RopeScaling | null): Float32Array {
  const half = hd / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / hd))));
  if (scaling === null) return inv;
  if (scaling.rope_type === 'linear') return inv.map((f) => f / scaling.factor);
  const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old } = scaling;
  const lowWavelen = old / lo;
  const highWavelen = old / hi;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** [B, Tk] additive mask: MASKED for the first leftPad[b] keys of row b, else 0. */
export function keyPadMask(leftPad: ArrayLike<number>, Tk: number): tf.Tensor2D {
  const B = leftPad.length;
  const m = new Float32Array(B * Tk);
  for (let b = 0; b < B; b++) m.fill(MASKED, b * Tk, b * Tk + Math.min(leftPad[b], Tk));
  return tf.tensor2d(m, [B, Tk]);
}

/** [Bm, T, Tk] -> [Bm, 1, T*g, Tk], each query row repeated for the g heads of its kv group. */
function expandGroups(mask: tf.Tensor3D, g: number): tf.Tensor4D {
  const [Bm, T, Tk] = mask.shape;
  if (g === 1) return mask.reshape([Bm, 1, T, Tk]);
  return mask.reshape([Bm, T, 1, Tk]).tile([1, 1, g, 1]).reshape([Bm, 1, T * g, Tk]);
}
