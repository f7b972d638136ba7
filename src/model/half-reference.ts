/**
 * A frozen KL reference held at 2 bytes per parameter (config `reference_dtype: bfloat16 |
 * float16`): its weights live as 16-bit host arrays, and each use (once per learner step, before
 * the policy's forward) widens them to a float32 model that is freed as soon as the reference
 * log-probabilities are computed. So between uses, and at the step's peak (the policy's backward,
 * which comes after), the reference costs 2 P bytes instead of 4 P. The policy's float32 master
 * weights and AdamW state are untouched. The widening is of the whole model at once (about 8 P
 * bytes for the length of the reference's forward, before the policy's activations exist); a
 * per-layer widening inside the forward would bound it to one layer. bfloat16 keeps float32's range with 8 bits of mantissa
 * (relative rounding <= 2^-9); float16 has 11 bits but overflows above 65504.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../shared/float16.js';
import { LlamaModel, type LogProbOptions } from './llama.js';
import type { LlamaConfig, NamedHostTensors } from './types.js';

export type ReferenceDtype = 'float32' | 'bfloat16' | 'float16';

/** What the trainer asks of its reference: log-probabilities, and freeing. */
export interface ReferenceModel {
  tokenLogProbs(ids: tf.Tensor2D, opts?: LogProbOptions): { logp: tf.Tensor2D; entropy?: tf.Tensor2D };
  dispose(): void;
}

export class HalfReference implements ReferenceModel {
  private weights: Map<string, { shape: number[]; data: Uint16Array }> | null;

  private constructor(
    readonly config: LlamaConfig,
    readonly dtype: 'bfloat16' | 'float16',
    weights: Map<string, { shape: number[]; data: Uint16Array }>,
  ) {
    this.weights = weights;
  }

  /** A 16-bit copy of `model`'s weights as they are now (one synchronous read per variable). */
  static from(model: LlamaModel, dtype: 'bfloat16' | 'float16'): HalfReference {
    const encode = dtype === 'bfloat16' ? encodeBf16 : encodeF16;
    const weights = new Map<string, { shape: number[]; data: Uint16Array }>();
    for (const [name, v] of model.variables()) {
      const src = v.dataSync() as Float32Array;
      const data = new Uint16Array(src.length);
      encode(src, data);
      weights.set(name, { shape: [...v.shape], data });
    }
    return new HalfReference(model.config, dtype, weights);
  }

  /** Bytes the 16-bit weights hold (2 per parameter). */
  get bytes(): number {
    let n = 0;
    for (const w of this.live().values()) n += w.data.byteLength;
    return n;
  }

  /** Same as LlamaModel.tokenLogProbs on the widened weights; the float32 copy is freed before returning. */
  tokenLogProbs(ids: tf.Tensor2D, opts: LogProbOptions = {}): { logp: tf.Tensor2D; entropy?: tf.Tensor2D } {
    const wide = this.widened();
    const model = LlamaModel.fromHostTensors(this.config, wide, { trainable: false }); // copies
    // the decoded arrays are garbage now: detach them so the next scavenge frees their memory
    // instead of a full GC much later (see engine/host-pool.ts freeSoon)
    for (const w of wide.values()) structuredClone(w.data.buffer, { transfer: [w.data.buffer as ArrayBuffer] });
    try {
      return model.tokenLogProbs(ids, opts);
    } finally {
      model.dispose();
    }
  }

  dispose(): void {
    this.weights = null;
  }

  private widened(): NamedHostTensors {
    const decode = this.dtype === 'bfloat16' ? decodeBf16 : decodeF16;
    const out: NamedHostTensors = new Map();
    for (const [name, w] of this.live()) {
      const data = new Float32Array(w.data.length);
      decode(w.data, data);
      out.set(name, { shape: w.shape, data });
    }
    return out;
  }

  private live(): Map<string, { shape: number[]; data: Uint16Array }> {
    if (this.weights === null) throw new GrpoError('GRPO_ERR_MODEL_DISPOSED', 'this reference model was disposed');
    return this.weights;
  }
}
