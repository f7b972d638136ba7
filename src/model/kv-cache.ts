/**
 * Batched incremental decoding state: the fused weights, each layer's cached keys/values and the
 * next-token log-probabilities of every live row. Prompts of different lengths are left-padded
 * to one length; padded keys are masked and each row's rotary positions start at 0 on its first
 * real token, so a row decodes exactly as it would alone. Each step feeds one token per live row
 * and appends its keys/values (the prefix is never recomputed). Rows that finish are dropped from
 * the batch, so later steps cost only what the remaining rows need.
 *
 * Created by LlamaModel.startDecoding; driven by sample() in sampling.ts.
 */
import { tf } from '../engine/tf.js';
import { decoderLayers, embed, fusedOwned, fuseWeights, headLogits, type FusedWeights, type LayerKV } from './llama-forward.js';
import type { LoraSideSpec } from './lora-side.js';
import type { RopeTables } from './rope.js';
import type { LlamaConfig } from './types.js';

export class DecodeSession {
  private slotRows: number[]; // original prompt index of each live batch slot
  private readonly w: FusedWeights;
  private readonly owned: tf.Tensor[]; // weight snapshot and fused projections, freed by dispose()
  private readonly invTemperature: number;
  private kv: LayerKV[]; // per layer [B_live, nKV, Tk, hd]
  private logp: tf.Tensor2D; // [B_live, V]: log_softmax(logits / temperature) of the next token
  private leftPad: number[]; // per slot: masked leading cache positions
  private nextPos: number[]; // per slot: rotary position of the next token fed
  private cacheLen: number; // Tk: positions held in the cache (padding included)
  private disposed = false;

  constructor(
    private readonly config: LlamaConfig,
    private readonly rope: RopeTables,
    params: Map<string, tf.Tensor>,
    prompts: number[][],
    temperature: number,
    side?: LoraSideSpec, // LoRA adapters applied beside the weights at every token (snapshotted too)
  ) {
    const B = prompts.length;
    const T = Math.max(...prompts.map((p) => p.length));
    this.slotRows = prompts.map((_, i) => i);
    this.invTemperature = temperature === 0 ? 1 : 1 / temperature;
    this.leftPad = prompts.map((p) => T - p.length);
    this.nextPos = prompts.map((p) => p.length);
    this.cacheLen = T;
    // Snapshot the weights: a policy update (Variable.assign swaps in new data) arriving while
    // this session awaits must not mix versions mid-sequence. Clones share data, so this is
    // free. The projections are concatenated once here, not on every step.
    this.owned = [...params.values()].map((v) => tf.keep(tf.clone(v)));
    const snapshot = new Map([...params.keys()].map((name, i) => [name, this.owned[i]]));
    let sideSnap: LoraSideSpec | undefined;
    if (side) {
      const copy = (m: Map<string, tf.Tensor2D>) => new Map([...m].map(([k, t]) => [k, tf.keep(tf.clone(t))]));
      sideSnap = { ...side, a: copy(side.a), b: copy(side.b) };
      this.owned.push(...sideSnap.a.values(), ...sideSnap.b.values());
    }
    this.w = fuseWeights(config, snapshot, sideSnap);
    for (const t of fusedOwned(this.w)) this.owned.push(tf.keep(t));

    const ids = new Int32Array(B * T).fill(config.pad_token_id ?? 0);
    const pos = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const pad = this.leftPad[b];
      ids.set(prompts[b], b * T + pad);
      for (let t = pad; t < T; t++) pos[b * T + t] = t - pad;
    }
    const d = config.hidden_size;
    let out;
    try {
      out = tf.tidy(() => {
        const coefs = rope.gathered(pos, B, T);
        const masks = rope.masks(T, this.leftPad);
        const x = embed(this.w, tf.tensor2d(ids, [B, T], 'int32'));
        const { h, kv } = decoderLayers(config, this.w, x, B, T, coefs, masks);
        // every row ends on a real token (left padding), so the last position predicts next
        const last = h.reshape([B, T, d]).slice([0, T - 1, 0], [B, 1, d]).reshape<tf.Tensor2D>([B, d]);
        return { logp: this.logProbs(last), kv: kv.flatMap((l) => [l.k, l.v]) };
      });
    } catch (err) {
      tf.dispose(this.owned);
      throw err;
    }
    this.logp = out.logp;
    this.kv = unflatten(out.kv);
  }

  /** Original prompt index of each live batch slot, in slot order. */
  get rows(): readonly number[] {
    return this.slotRows;
  }

  /** Next-token log-probs of the live slots, row-major [B_live * V]: the one host read per step. */
  async readLogProbs(): Promise<Float32Array> {
    return (await this.logp.data()) as Float32Array;
  }

  /** Keeps only the given live slots, in that order (drops rows that finished). */
  keep(slots: number[]): void {
    if (slots.length === this.rows.length && slots.every((s, i) => s === i)) return;
    const out = tf.tidy(() => {
      const idx = tf.tensor1d(slots, 'int32');
      const kv = this.kv.flatMap((l) => [tf.gather(l.k, idx), tf.gather(l.v, idx)]);
      return { logp: tf.gather(this.logp, idx), kv };
    });
    this.replace(out.logp, out.kv);
    this.slotRows = slots.map((s) => this.slotRows[s]);
    this.leftPad = slots.map((s) => this.leftPad[s]);
    this.nextPos = slots.map((s) => this.nextPos[s]);
  }

  /** Feeds one token per live slot, appending to the cache, and computes the next log-probs. */
  step(tokens: number[]): void {
    const B = this.rows.length;
    const Tk = this.cacheLen + 1;
    const out = tf.tidy(() => {
      const coefs = this.rope.gathered(Int32Array.from(this.nextPos), B, 1);
      const masks = this.rope.stepMasks(this.leftPad, Tk); // padding, and the window of sliding layers
      const x = embed(this.w, tf.tensor2d(tokens, [B, 1], 'int32'));
      const { h, kv } = decoderLayers(this.config, this.w, x, B, 1, coefs, masks, this.kv);
      return { logp: this.logProbs(h), kv: kv.flatMap((l) => [l.k, l.v]) };
    });
    this.replace(out.logp, out.kv);
    this.cacheLen = Tk;
    for (let s = 0; s < B; s++) this.nextPos[s]++;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose([this.logp, ...this.kv.flatMap((l) => [l.k, l.v]), ...this.owned]);
  }

  /** h [B, d] -> log_softmax(logits / temperature) [B, V]. */
  private logProbs(h: tf.Tensor2D): tf.Tensor2D {
    const z = headLogits(this.config, this.w, h);
    return tf.logSoftmax(this.invTemperature === 1 ? z : z.mul<tf.Tensor2D>(this.invTemperature));
  }

  private replace(logp: tf.Tensor2D, kv: tf.Tensor4D[]): void {
    tf.dispose([this.logp, ...this.kv.flatMap((l) => [l.k, l.v])]);
    this.logp = logp;
    this.kv = unflatten(kv);
  }
}

function unflatten(flat: tf.Tensor4D[]): LayerKV[] {
  const out: LayerKV[] = [];
  for (let i = 0; i < flat.length; i += 2) out.push({ k: flat[i], v: flat[i + 1] });
  return out;
}
