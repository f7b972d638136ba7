/**
 * LoRA adapters (Hu et al. 2021, as PEFT implements them): for each targeted linear layer with
 * frozen weight W [out, in], two trained matrices A [r, in] and B [out, r], and the layer uses
 *
 *   W' = W + (alpha / r) * B A
 *
 * Here the adapters are merged into the weight inside the forward (one [out, r] x [r, in] matMul
 * per layer and step, small next to the [tokens, in] x [in, out] products), so the model's fused
 * forward runs unchanged on every backend, gradients reach only A and B, and the frozen base
 * weights double as the KL reference (no second copy). With lora_dropout > 0 the training forward
 * runs them beside W instead, x W^T + s (dropout(x) A^T) B^T, as PEFT does (lora-side.ts). Initialisation is PEFT's default: A
 * kaiming-uniform (bound 1 / sqrt(in)), B zero, so step 0 is exactly the base model.
 *
 * Names follow PEFT: the module `model.layers.0.self_attn.q_proj` carries
 * `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` and `...lora_B.weight`.
 */
import { createHash } from 'node:crypto';
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import type { LoraSideSpec } from './lora-side.js';
import type { NamedHostTensors } from './types.js';

/** The projection names PEFT users write in target_modules for Llama-family models. */
export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export interface LoraSpec {
  r: number; // rank
  alpha: number; // scale numerator: the update is (alpha / r) B A
  dropout: number; // PEFT's lora_dropout: inverted dropout on the adapter path's input in training forwards (lora-side.ts)
  targetModules: string[] | 'all-linear';
}

/** One adapted linear layer: the HF weight it adapts and its shape. */
export interface LoraTarget {
  module: string; // e.g. model.layers.0.self_attn.q_proj
  weight: string; // module + '.weight'
  out: number;
  in: number;
}

/** Linear layers of a model by its parameter shapes: 2-D weights other than embeddings and head. */
export function linearLayers(shapes: Map<string, number[]>): LoraTarget[] {
  const out: LoraTarget[] = [];
  for (const [name, shape] of shapes) {
    if (shape.length !== 2 || !name.endsWith('.weight')) continue;
    if (name === 'lm_head.weight' || name.endsWith('embed_tokens.weight')) continue;
    const module = name.slice(0, -'.weight'.length);
    out.push({ module, weight: name, out: shape[0]!, in: shape[1]! });
  }
  return out;
}

/** The short name PEFT matches target_modules against: the last segment of the module name. */
export function shortName(module: string): string {
  return module.slice(module.lastIndexOf('.') + 1);
}

/**
 * The layers `spec` adapts. `all-linear` takes every linear layer but the output head, as PEFT
 * does. Fails (GRPO_ERR_CONFIG) when a listed name matches nothing, naming the model's linear
 * layers, and when r exceeds a layer's smaller dimension.
 */
export function loraTargets(shapes: Map<string, number[]>, spec: LoraSpec): LoraTarget[] {
  const linear = linearLayers(shapes);
  const available = [...new Set(linear.map((l) => shortName(l.module)))];
  let targets: LoraTarget[];
  if (spec.targetModules === 'all-linear') {
    targets = linear;
  } else {
    const wanted = new Set(spec.targetModules);
    for (const name of wanted) {
      if (!available.includes(name)) {
        throw new GrpoError(
          'GRPO_ERR_CONFIG',
          `lora_target_modules: ${name} matches no linear layer of this model; its linear layers are ${available.join(', ')} (or use all-linear)`,
        );
      }
    }
    targets = linear.filter((l) => wanted.has(shortName(l.module)));
  }
  for (const t of targets) {
    if (spec.r > Math.min(t.out, t.in)) {
      throw new GrpoError('GRPO_ERR_CONFIG', `lora_r ${spec.r} exceeds the smaller dimension (${Math.min(t.out, t.in)}) of ${t.module} [${t.out}, ${t.in}]`);
    }
  }
  return targets;
}

/** PEFT's tensor names for a module's adapters. */
export function peftNames(module: string): { a: string; b: string } {
  return { a: `base_model.model.${module}.lora_A.weight`, b: `base_model.model.${module}.lora_B.weight` };
}

/**
 * A stable fingerprint of base weights (sha256 over names, shapes and float32 bytes, in name
 * order): adapters travel with the fingerprint of the base they were trained on, and a worker
 * holding another base refuses them.
 */
export function baseFingerprint(weights: NamedHostTensors): string {
  const h = createHash('sha256');
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    h.update(`${name}[${t.shape.join(',')}]`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 32);
}

/** Trainable A and B for each target, as tf variables, and the merge into a model's weights. */
export class LoraAdapters {
  readonly spec: LoraSpec;
  readonly targets: LoraTarget[];
  readonly scale: number;
  private readonly a = new Map<string, tf.Variable>(); // by HF weight name, [r, in]
  private readonly b = new Map<string, tf.Variable>(); // by HF weight name, [out, r]
  private disposed = false;

  private constructor(spec: LoraSpec, targets: LoraTarget[], tensors: NamedHostTensors) {
    this.spec = spec;
    this.targets = targets;
    this.scale = spec.alpha / spec.r;
    for (const t of targets) {
      const n = peftNames(t.module);
      const a = tensors.get(n.a)!;
      const b = tensors.get(n.b)!;
      this.a.set(t.weight, variableOf(a.data, [spec.r, t.in]));
      this.b.set(t.weight, variableOf(b.data, [t.out, spec.r]));
    }
  }

  /** Fresh adapters: A ~ U(-1/sqrt(in), 1/sqrt(in)) from `seed`, B = 0 (the base model exactly). */
  static create(shapes: Map<string, number[]>, spec: LoraSpec, seed: number): LoraAdapters {
    const targets = loraTargets(shapes, spec);
    const rng = new Rng(seed);
    const tensors: NamedHostTensors = new Map();
    for (const t of targets) {
      const n = peftNames(t.module);
      const bound = 1 / Math.sqrt(t.in);
      const a = new Float32Array(spec.r * t.in);
      for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
      tensors.set(n.a, { shape: [spec.r, t.in], data: a });
      tensors.set(n.b, { shape: [t.out, spec.r], data: new Float32Array(t.out * spec.r) });
    }
    return new LoraAdapters(spec, targets, tensors);
  }

  /** Adapters from PEFT-named host tensors (a checkpoint, or the wire); every shape is checked. */
  static fromHostTensors(shapes: Map<string, number[]>, spec: LoraSpec, tensors: NamedHostTensors): LoraAdapters {
    const targets = loraTargets(shapes, spec);
    checkAdapterTensors(targets, spec.r, tensors);
    return new LoraAdapters(spec, targets, tensors);
  }

  /**
   * Adapters from PEFT-named tensors of rank `r` on the layers their names say (a worker's adapter
   * payload), not from a run's target list; GRPO_ERR_ADAPTER_MISMATCH when they do not fit.
   */
  static fromNamedTensors(shapes: Map<string, number[]>, r: number, alpha: number, tensors: NamedHostTensors): LoraAdapters {
    const targets = namedAdapterTargets(shapes, tensors, r);
    const spec: LoraSpec = { r, alpha, dropout: 0, targetModules: [...new Set(targets.map((t) => shortName(t.module)))] };
    return new LoraAdapters(spec, targets, tensors);
  }

  /** The trainable variables, by PEFT name (what the optimizer updates and checkpoints save). */
  variables(): Map<string, tf.Variable> {
    this.checkAlive();
    const out = new Map<string, tf.Variable>();
    for (const t of this.targets) {
      const n = peftNames(t.module);
      out.set(n.a, this.a.get(t.weight)!);
      out.set(n.b, this.b.get(t.weight)!);
    }
    return out;
  }

  /**
   * The weights the adapted model computes with: `params` with each target W replaced by
   * W + scale * B A. Differentiable in A and B; call inside tf.tidy (or a gradient function).
   */
  apply(params: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
    this.checkAlive();
    const out = new Map(params);
    for (const t of this.targets) {
      const w = params.get(t.weight);
      if (!w) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `the model has no ${t.weight} for its LoRA adapter`);
      const delta = tf.matMul(this.b.get(t.weight)!, this.a.get(t.weight)!).mul(this.scale); // [out, in]
      out.set(t.weight, w.add(delta));
    }
    return out;
  }

  /**
   * A and B by the HF weight they adapt, for the side path (lora-side.ts): dropout masks from
   * `seed` when the spec's dropout is above 0, none when `seed` is null.
   */
  sideSpec(seed: number | null): LoraSideSpec {
    this.checkAlive();
    return { a: this.a as Map<string, tf.Tensor2D>, b: this.b as Map<string, tf.Tensor2D>, scale: this.scale, dropout: this.spec.dropout, seed };
  }

  /** Copies of A and B by PEFT name. */
  async toHostTensors(): Promise<NamedHostTensors> {
    const out: NamedHostTensors = new Map();
    for (const [name, v] of this.variables()) out.set(name, { shape: [...v.shape], data: new Float32Array(await v.data<'float32'>()) });
    return out;
  }

  /** Overwrites A and B (e.g. a resumed run or a new adapter version); shapes are checked. */
  setHostTensors(tensors: NamedHostTensors): void {
    this.checkAlive();
    checkAdapterTensors(this.targets, this.spec.r, tensors);
    for (const [name, v] of this.variables()) {
      const src = tensors.get(name)!;
      const t = tf.tensor(src.data, v.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  }

  numParams(): number {
    let n = 0;
    for (const v of this.variables().values()) n += v.size;
    return n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of [...this.a.values(), ...this.b.values()]) v.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new GrpoError('GRPO_ERR_MODEL_DISPOSED', 'these LoRA adapters were disposed');
  }
}

/** A trainable variable holding a copy of `data` (the initial tensor is freed). */
function variableOf(data: Float32Array, shape: [number, number]): tf.Variable {
  const init = tf.tensor2d(data.slice(), shape);
  const v = tf.variable(init, true);
  init.dispose();
  return v;
}

/** Every target has its A [r, in] and B [out, r] and nothing else is there (GRPO_ERR_ADAPTER_MISMATCH). */
export function checkAdapterTensors(targets: LoraTarget[], r: number, tensors: NamedHostTensors): void {
  const expected = new Map<string, number[]>();
  for (const t of targets) {
    const n = peftNames(t.module);
    expected.set(n.a, [r, t.in]);
    expected.set(n.b, [t.out, r]);
  }
  for (const [name, shape] of expected) {
    const got = tensors.get(name);
    if (!got) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `adapter tensor ${name} is missing (expected [${shape}])`);
    if (got.shape.length !== 2 || got.shape[0] !== shape[0] || got.shape[1] !== shape[1] || got.data.length !== shape[0]! * shape[1]!) {
      throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `adapter tensor ${name} has shape [${got.shape}], this base needs [${shape}]`);
    }
  }
  for (const name of tensors.keys()) {
    if (!expected.has(name)) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `adapter tensor ${name} matches no adapted layer of this base`);
  }
}

/**
 * Base weights with the adapters folded in (W + scale * B A per target), as new host tensors;
 * the base is not modified. What `grpo export --merge` writes and what workers sample with.
 */
export function mergeAdapters(
  base: NamedHostTensors,
  targets: LoraTarget[],
  scale: number,
  adapters: NamedHostTensors,
): NamedHostTensors {
  const out: NamedHostTensors = new Map(base);
  for (const t of targets) {
    const n = peftNames(t.module);
    const w = base.get(t.weight);
    if (!w) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `the base has no ${t.weight} for its LoRA adapter`);
    const a = adapters.get(n.a)!;
    const b = adapters.get(n.b)!;
    const merged = tf.tidy(() =>
      tf.tensor2d(w.data, [t.out, t.in]).add(tf.matMul(tf.tensor2d(b.data, b.shape as [number, number]), tf.tensor2d(a.data, a.shape as [number, number])).mul(scale)),
    );
    out.set(t.weight, { shape: [t.out, t.in], data: new Float32Array(merged.dataSync()) });
    merged.dispose();
  }
  return out;
}

/** True for a PEFT adapter tensor name (`...lora_A.weight` / `...lora_B.weight`). */
export function isAdapterName(name: string): boolean {
  return /\.lora_[AB]\.weight$/.test(name);
}

/**
 * The adapted layers of PEFT-named adapters of rank `r`, read off their names and checked against
 * the base's shapes (GRPO_ERR_ADAPTER_MISMATCH when they do not fit): what a worker does with an
 * adapter payload.
 */
export function namedAdapterTargets(shapes: Map<string, number[]>, adapters: NamedHostTensors, r: number): LoraTarget[] {
  const modules = new Set<string>();
  for (const name of adapters.keys()) {
    const m = /^base_model\.model\.(.+)\.lora_[AB]\.weight$/.exec(name);
    if (m === null) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `${name} is not a PEFT LoRA tensor name`);
    modules.add(m[1]!);
  }
  const targets = linearLayers(shapes).filter((t) => modules.has(t.module));
  if (targets.length !== modules.size) {
    const known = new Set(targets.map((t) => t.module));
    const missing = [...modules].find((m) => !known.has(m));
    throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `adapters for ${missing}, which is no linear layer of this base`);
  }
  checkAdapterTensors(targets, r, adapters);
  return targets;
}

/** Base weights with PEFT-named adapters of rank `r` merged in (the layers read off their names). */
export function mergeNamedAdapters(shapes: Map<string, number[]>, base: NamedHostTensors, adapters: NamedHostTensors, r: number, alpha: number): NamedHostTensors {
  return mergeAdapters(base, namedAdapterTargets(shapes, adapters, r), alpha / r, adapters);
}
