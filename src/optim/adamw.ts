/**
 * AdamW (Loshchilov & Hutter): Adam with decoupled weight decay and bias correction, step for
 * step the update of PyTorch's torch.optim.AdamW:
 *
 *   p <- p * (1 - lr * wd)                        (decay, only where `decay(name)` is true)
 *   m <- b1 * m + (1 - b1) * g
 *   v <- b2 * v + (1 - b2) * g^2
 *   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * The state is kept per parameter under the names torch uses, so optimizer.safetensors reads
 * naturally next to model.safetensors: `<param>.exp_avg`, `<param>.exp_avg_sq` (the parameter's
 * shape) and `<param>.step` (a float32 scalar). A parameter that gets no gradient in a step is
 * left untouched, as torch skips parameters whose grad is None.
 */
import { fusedAdamW } from '../engine/fused-ops.js';
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import type { NamedHostTensors } from '../model/types.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number; // decoupled, per unit learning rate (torch's weight_decay)
  /** Which parameters decay. Default: rank >= 2 (matrices and embeddings, not RMSNorm gains). */
  decay: (name: string, shape: readonly number[]) => boolean;
}

export const ADAMW_DEFAULTS: Readonly<AdamWOptions> = Object.freeze({
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  decay: (_name: string, shape: readonly number[]) => shape.length >= 2,
});

interface Slot {
  param: tf.Variable;
  expAvg: tf.Variable;
  expAvgSq: tf.Variable;
  decays: boolean;
}

export class AdamW {
  readonly options: Readonly<AdamWOptions>;
  private readonly slots = new Map<string, Slot>();
  private t = 0; // completed steps

  constructor(params: ReadonlyMap<string, tf.Variable>, opts: Partial<AdamWOptions> = {}) {
    this.options = Object.freeze({ ...ADAMW_DEFAULTS, ...opts });
    const { beta1, beta2, eps, weightDecay } = this.options;
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
      throw new GrpoError('GRPO_ERR_OPTIMIZER', `betas are (${beta1}, ${beta2}); each must be in [0, 1)`);
    }
    if (!(eps > 0) || !(weightDecay >= 0)) {
      throw new GrpoError('GRPO_ERR_OPTIMIZER', `eps is ${eps} and weight decay ${weightDecay}; need eps > 0 and decay >= 0`);
    }
    for (const [name, param] of params) {
      this.slots.set(name, {
        param,
        expAvg: zerosVariable(param.shape),
        expAvgSq: zerosVariable(param.shape),
        decays: weightDecay > 0 && this.options.decay(name, param.shape),
      });
    }
  }

  /** Steps taken so far (torch's `state[p]["step"]`). */
  get step(): number {
    return this.t;
  }

  /** One update at learning rate `lr` from gradients by parameter name. */
  apply(grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new GrpoError('GRPO_ERR_OPTIMIZER', `learning rate is ${lr}; it must be finite and >= 0`);
    for (const [name, g] of grads) {
      const slot = this.slots.get(name);
      if (!slot) throw new GrpoError('GRPO_ERR_OPTIMIZER', `gradient for ${name}, which is not a parameter of this optimizer`);
      if (!tf.util.arraysEqual(g.shape, slot.param.shape)) {
        throw new GrpoError('GRPO_ERR_OPTIMIZER', `gradient of ${name} has shape [${g.shape}], the parameter [${slot.param.shape}]`);
      }
    }
    this.t += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const stepSize = lr / (1 - beta1 ** this.t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.t);
    for (const [name, g] of grads) {
      const { param, expAvg, expAvgSq, decays } = this.slots.get(name)!;
      // one pass over memory, in place, where the backend has the fused kernel (wasm, native): same formula
      const decay = decays ? 1 - lr * weightDecay : 1;
      const fused = fusedAdamW(param, g, expAvg, expAvgSq, { beta1, beta2, eps, stepSize, bc2Sqrt, decay, inPlace: true });
      if (fused) {
        param.assign(fused[0]);
        expAvg.assign(fused[1]);
        expAvgSq.assign(fused[2]);
        tf.dispose(fused);
        continue;
      }
      // Stock ops (other backends): each temporary is freed as soon as the next op has read it,
      // not at the end of a tidy: for the [49152, 576] embedding of a 135M model a tidy held 11 parameter-sized temporaries at
      // once (1.2 GB, the step's peak); this way at most 2 live beside p, m, v and g. Same ops in
      // the same order, so the same bits.
      tf.tidy(() => {
        const m = then(expAvg.mul(beta1), (a) => then(g.mul(1 - beta1), (b) => a.add(b)));
        expAvg.assign(m); // the variable now holds m's buffer; the tidy frees the handle
        const v = then(g.square(), (g2) => then(g2.mul(1 - beta2), (b) => then(expAvgSq.mul(beta2), (a) => a.add(b))));
        expAvgSq.assign(v);
        const denom = then(v.sqrt(), (s) => then(s.div(bc2Sqrt), (d) => d.add(eps)));
        const update = then(m.div(denom), (u) => u.mul(stepSize));
        denom.dispose();
        const decayed = decays ? param.mul(1 - lr * weightDecay) : param;
        const next = decayed.sub(update);
        update.dispose();
        if (decayed !== param) decayed.dispose();
        param.assign(next);
      });
    }
  }

  /** The state as host tensors (copies), named as in the file comment. */
  async exportState(): Promise<NamedHostTensors> {
    const out: NamedHostTensors = new Map();
    for (const [name, s] of this.slots) {
      out.set(`${name}.exp_avg`, { shape: [...s.param.shape], data: new Float32Array(await s.expAvg.data<'float32'>()) });
      out.set(`${name}.exp_avg_sq`, { shape: [...s.param.shape], data: new Float32Array(await s.expAvgSq.data<'float32'>()) });
      out.set(`${name}.step`, { shape: [], data: new Float32Array([this.t]) });
    }
    return out;
  }

  /**
   * Restores a state written by exportState (e.g. from optimizer.safetensors). Every parameter
   * needs all three entries with matching shapes and one common step; otherwise
   * GRPO_ERR_OPTIMIZER_STATE names the first problem and nothing is changed.
   */
  importState(state: NamedHostTensors): void {
    const bad = (msg: string): GrpoError => new GrpoError('GRPO_ERR_OPTIMIZER_STATE', `optimizer state: ${msg}`);
    let step: number | null = null;
    for (const [name, s] of this.slots) {
      for (const key of ['exp_avg', 'exp_avg_sq']) {
        const t = state.get(`${name}.${key}`);
        if (!t) throw bad(`${name}.${key} is missing`);
        if (!tf.util.arraysEqual(t.shape, s.param.shape)) throw bad(`${name}.${key} has shape [${t.shape}], the parameter [${s.param.shape}]`);
      }
      const st = state.get(`${name}.step`);
      if (!st || st.data.length !== 1) throw bad(`${name}.step is missing or not a scalar`);
      const value = st.data[0];
      if (!Number.isInteger(value) || value < 0) throw bad(`${name}.step is ${value}; expected a non-negative integer`);
      if (step !== null && value !== step) throw bad(`${name}.step is ${value} but other parameters are at step ${step}`);
      step = value;
    }
    const known = new Set([...this.slots.keys()].flatMap((n) => [`${n}.exp_avg`, `${n}.exp_avg_sq`, `${n}.step`]));
    for (const key of state.keys()) if (!known.has(key)) throw bad(`${key} belongs to no parameter of this model`);
    for (const [name, s] of this.slots) {
      for (const [key, v] of [['exp_avg', s.expAvg], ['exp_avg_sq', s.expAvgSq]] as const) {
        const src = state.get(`${name}.${key}`)!;
        const t = tf.tensor(src.data.slice(), src.shape, 'float32');
        v.assign(t);
        t.dispose();
      }
    }
    this.t = step ?? 0;
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose([s.expAvg, s.expAvgSq]);
    this.slots.clear();
  }
}

/** f(x), then x is freed: the next op's input never outlives it. */
function then<T extends tf.Tensor>(x: tf.Tensor, f: (x: tf.Tensor) => T): T {
  try {
    return f(x);
  } finally {
    x.dispose();
  }
}

function zerosVariable(shape: number[]): tf.Variable {
  const zeros = tf.zeros(shape, 'float32');
  const v = tf.variable(zeros, false);
  zeros.dispose(); // the variable holds its own reference to the buffer
  return v;
}
