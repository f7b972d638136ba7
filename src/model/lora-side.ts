/**
 * LoRA as a side path beside the frozen base weight, as PEFT computes it:
 *
 *   y = x W^T + scale * (dropout(x) A^T) B^T        x [N, in], W [out, in], A [r, in], B [out, r]
 *
 * instead of the merged y = x (W + scale B A)^T of lora.ts. Two uses:
 *   - training with lora_dropout p > 0: each adapted layer sees its input through inverted
 *     dropout (kept entries scaled by 1 / (1 - p)), a mask of its own per layer and module, so
 *     the expected output over masks is the merged one;
 *   - sampling with the adapters beside the base (config lora_sampling: side), no dropout.
 *
 * Masks are drawn on the host from a counter-based hash of (seed, entry): the same seed gives the
 * same mask on every backend and on every call, so deterministic mode stays deterministic and a
 * layer recomputed in backward (gradient checkpointing, recompute.ts) drops exactly the entries
 * its forward dropped.
 */
import { tf } from '../engine/tf.js';

/** Which fused projection of a decoder layer a part adapts (llama-forward.ts FusedLayer). */
export type LoraProj = 'qkv' | 'o' | 'gu' | 'down';

/** One adapted module of a layer: its slot in the fused projection and its A, B. */
export interface LoraPart {
  proj: LoraProj;
  slot: number; // qkv: 0 q, 1 k, 2 v; gu: 0 gate, 1 up; o, down: 0
  a: tf.Tensor2D; // [r, in]
  b: tf.Tensor2D; // [out, r]
}

/** A decoder layer's side path: its adapted modules, the scale, and dropout (seed null: none). */
export interface LoraLayer {
  parts: LoraPart[];
  scale: number; // alpha / r
  dropout: number; // p in [0, 1)
  seed: number | null; // this layer's mask seed; null: no dropout (sampling, eval, reference)
}

/** The adapters of a whole model for fuseWeights: A and B by the HF weight name they adapt. */
export interface LoraSideSpec {
  a: Map<string, tf.Tensor2D>;
  b: Map<string, tf.Tensor2D>;
  scale: number;
  dropout: number;
  seed: number | null; // the forward's dropout seed (per micro-batch); null: no dropout
}

const SLOTS: [string, LoraProj, number][] = [
  ['self_attn.q_proj', 'qkv', 0],
  ['self_attn.k_proj', 'qkv', 1],
  ['self_attn.v_proj', 'qkv', 2],
  ['self_attn.o_proj', 'o', 0],
  ['mlp.gate_proj', 'gu', 0],
  ['mlp.up_proj', 'gu', 1],
  ['mlp.down_proj', 'down', 0],
];

/** The side path of decoder layer `i` (null when no module of it is adapted). */
export function loraLayer(side: LoraSideSpec, i: number): LoraLayer | null {
  const parts: LoraPart[] = [];
  for (const [module, proj, slot] of SLOTS) {
    const w = `model.layers.${i}.${module}.weight`;
    const a = side.a.get(w);
    const b = side.b.get(w);
    if (a !== undefined && b !== undefined) parts.push({ proj, slot, a, b });
  }
  if (parts.length === 0) return null;
  const seed = side.seed === null || side.dropout === 0 ? null : mixSeed(side.seed, i);
  return { parts, scale: side.scale, dropout: side.dropout, seed };
}

/**
 * The side term of one fused projection: x [N, in] -> [N, sum(outs)], the adapted slots'
 * scale * (dropout(x) A^T) B^T side by side and zeros for the slots not adapted; null when no
 * slot of `proj` is adapted (the caller adds nothing).
 */
export function sideTerm(lora: LoraLayer | null, proj: LoraProj, x: tf.Tensor2D, outs: number[]): tf.Tensor2D | null {
  if (lora === null) return null;
  const parts = lora.parts.filter((p) => p.proj === proj);
  if (parts.length === 0) return null;
  const [N, d] = x.shape;
  const cols = outs.map((out, slot) => {
    const p = parts.find((q) => q.slot === slot);
    if (p === undefined) return tf.zeros([N, out]) as tf.Tensor2D;
    let xin = x;
    let scale = lora.scale;
    if (lora.seed !== null) {
      // one mask per (layer, module): PEFT gives every adapted Linear its own Dropout. Kept as
      // bytes on the host (a quarter of the pages a float mask would fault in), cast on the
      // backend into a pooled buffer; the 1 / (1 - p) of inverted dropout goes into the scale.
      const keep = tf.tensor2d(dropoutMask(N * d, lora.dropout, mixSeed(lora.seed, SLOT_IDS[proj] + slot)), [N, d], 'bool');
      xin = x.mul(keep.cast('float32'));
      scale /= 1 - lora.dropout;
    }
    const low = tf.matMul<tf.Tensor2D>(xin, p.a, false, true); // [N, r]
    return tf.matMul<tf.Tensor2D>(low, p.b, false, true).mul<tf.Tensor2D>(scale); // [N, out]
  });
  return cols.length === 1 ? cols[0]! : tf.concat2d(cols, 1);
}

const SLOT_IDS: Record<LoraProj, number> = { qkv: 0, o: 3, gu: 4, down: 6 };

/**
 * Dropout keep flags for n entries: 0 (dropped) with probability p, else 1; the caller scales the
 * kept ones by 1 / (1 - p). Entry j is dropped when hash(seed, j) / 2^32 < p (a counter-based
 * hash: any entry, any order, same value). Cost here: the first touch of a fresh buffer's pages
 * dominates (a new 40 MB Float32Array filled takes ~340 ms on this machine, a 10 MB Uint8Array
 * ~76 ms; the hash loop alone ~5-9 ns an entry). The 135M shape at 512 tokens draws ~77 M
 * entries per micro-batch.
 */
export function dropoutMask(n: number, p: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const threshold = Math.floor(p * 4294967296); // drop when the 32-bit hash is below it
  const s1 = seed >>> 0;
  const s2 = mixSeed(seed, 0x5bd1e995);
  for (let j = 0; j < n; j++) {
    // two rounds of lowbias32 (Wellons), the seed folded into each: entries of different seeds
    // are not the same sequence shifted
    let z = lowbias32((j + s1) >>> 0);
    z = lowbias32((z ^ s2) >>> 0);
    out[j] = z < threshold ? 0 : 1;
  }
  return out;
}

function lowbias32(x: number): number {
  let z = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b);
  return (z ^ (z >>> 16)) >>> 0;
}

/** A new 32-bit seed from a seed and an index (splitmix32 finaliser): distinct streams per index. */
export function mixSeed(seed: number, index: number): number {
  let z = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
