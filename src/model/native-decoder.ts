/**
 * The native rollout decoder (native/src/decode.cc, addon grpo_decode.node): the decoder forward of
 * every supported family (Llama and its Llama-3 variants, Qwen2, Qwen3, Gemma2; the switches of
 * architecture.ts and the rotary frequencies of rope.ts, so it reads the same config fields the
 * reference does) that holds its own copy of the weights and its own KV cache in native memory and runs one whole
 * model step for every live row in one call, the log-softmax included. It never touches
 * TensorFlow.js memory, so it is independent of the tfjs backend; sample() picks it through
 * decode-path.ts and falls back to the tfjs DecodeSession (kv-cache.ts) for anything it does not
 * support.
 *
 * Weights are copied from the model once per policy version: a model's copy is kept beside it
 * (WeakMap) together with the dataId of each variable, and reloaded when any differs. Every
 * weight change goes through Variable.assign (setWeights, AdamW), which gives the variable a new
 * dataId, so a stale copy is never used.
 *
 * NativeDecodeSession has the DecodeSession interface (rows, readLogProbs, keep, step, dispose).
 * Each prompt row owns a cache row of maxLength positions from position 0 (no left padding).
 * Identical prompts are prefilled once and their cache copied to the other rows (a GRPO group's
 * completions share their prompt). Dropping finished rows only reorders the live list.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pickBlasCore } from '../engine/native-addon.js';
import { tf } from '../engine/tf.js';
import { archOf, type Arch } from './architecture.js';
import { headDim, llamaParamShapes } from './llama-params.js';
import type { LlamaModel } from './llama.js';
import { inverseFrequencies } from './rope.js';
import type { ModelConfig } from './types.js';

/** Opaque native handle (a JS external); freed by `free` or at garbage collection. */
type Handle = { readonly __native: unique symbol };

interface DecodeAddon {
  decoderNew(dims: Int32Array, eps: number, weights: Float32Array[], arch: Float64Array, windows: Int32Array): Handle;
  cacheNew(decoder: Handle, rows: number, maxLen: number, invFreq: Float32Array): Handle;
  forward(decoder: Handle, cache: Handle, slots: Int32Array, counts: Int32Array, tokens: Int32Array, out: Float32Array, invTemperature: number): void;
  copyRow(cache: Handle, src: number, dst: number): void;
  resetRow(cache: Handle, slot: number): void;
  free(handle: Handle): void;
}

let loaded: { addon: DecodeAddon | null; error?: string } | null = null;

const BUILT = 'native/build/Release/grpo_decode.node';

/** The addon's path: GRPO_DECODE_ADDON, else the first native/build above this file (src/ or dist/). */
export function decodeAddonPath(): string {
  if (process.env.GRPO_DECODE_ADDON) return resolve(process.env.GRPO_DECODE_ADDON);
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (existsSync(resolve(dir, BUILT))) return resolve(dir, BUILT);
    if (dirname(dir) === dir) return resolve(here, '../..', BUILT);
  }
}

/** Loads grpo_decode.node once per process; never throws (null with the reason instead). */
export function loadDecodeAddon(): { addon: DecodeAddon | null; error?: string } {
  if (loaded) return loaded;
  const path = decodeAddonPath();
  if (!existsSync(path)) loaded = { addon: null, error: `not built (${path} is missing; npm run build:native)` };
  else {
    // OpenBLAS picks its CPU kernels when first loaded; name them as the engine's addon does
    if (!process.env.OPENBLAS_CORETYPE && process.platform === 'linux' && process.arch === 'x64' && existsSync('/proc/cpuinfo')) {
      const core = pickBlasCore(readFileSync('/proc/cpuinfo', 'utf8'));
      if (core) process.env.OPENBLAS_CORETYPE = core;
    }
    try {
      loaded = { addon: createRequire(import.meta.url)(path) as DecodeAddon };
    } catch (err) {
      loaded = { addon: null, error: `failed to load ${path}: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
  return loaded;
}

/**
 * Why the native decoder cannot run this model, or null when it can. It implements every family
 * of architecture.ts through the same archOf() switches and rope.ts's inverse frequencies as the
 * reference forward, so what remains to check is that the parameters are the family's own
 * (names and shapes of llamaParamShapes) and that no LoRA adapter is attached.
 */
export function nativeUnsupported(model: LlamaModel): string | null {
  // it copies the model's own weights; attached LoRA adapters are merged only by the tfjs forward
  if (model.getAdapters() !== null) return 'LoRA adapters attached (lora_sampling: side; merged weights decode natively)';
  let want: Map<string, number[]>;
  try {
    want = llamaParamShapes(model.config);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const have = model.variables();
  if (have.size !== want.size) return `${have.size} parameters where the ${model.config.model_type} config has ${want.size}`;
  for (const [name, shape] of want) {
    const v = have.get(name);
    if (!v || v.shape.join() !== shape.join()) return `parameter ${name} missing or of another shape`;
  }
  return null;
}

/**
 * The HF names of the weights decoderNew takes, in its order (see native/src/decode.cc). Those
 * ending in norm.weight are RMSNorm weights: Gemma2's get their + 1 before the copy.
 */
export function nativeWeightNames(c: ModelConfig, arch: Arch = archOf(c)): string[] {
  const names = ['model.embed_tokens.weight'];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const n = `model.layers.${i}`;
    const a = `${n}.self_attn`;
    names.push(`${n}.input_layernorm.weight`, `${a}.q_proj.weight`, `${a}.k_proj.weight`, `${a}.v_proj.weight`);
    if (arch.qkvBias) names.push(`${a}.q_proj.bias`, `${a}.k_proj.bias`, `${a}.v_proj.bias`);
    if (arch.qkNorm) names.push(`${a}.q_norm.weight`, `${a}.k_norm.weight`);
    names.push(`${a}.o_proj.weight`);
    if (arch.oBias) names.push(`${a}.o_proj.bias`);
    if (arch.sandwich) {
      names.push(`${n}.post_attention_layernorm.weight`, `${n}.pre_feedforward_layernorm.weight`, `${n}.post_feedforward_layernorm.weight`);
    } else names.push(`${n}.post_attention_layernorm.weight`);
    names.push(`${n}.mlp.gate_proj.weight`, `${n}.mlp.up_proj.weight`);
    if (arch.mlpBias) names.push(`${n}.mlp.gate_proj.bias`, `${n}.mlp.up_proj.bias`);
    names.push(`${n}.mlp.down_proj.weight`);
    if (arch.mlpBias) names.push(`${n}.mlp.down_proj.bias`);
  }
  names.push('model.norm.weight', c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return names;
}

/** decoderNew's arch vector: [qkvBias, oBias, mlpBias, qkNorm, sandwich, gelu, embedScale, queryScale / cap, attnCap, finalCap]. */
function archVector(arch: Arch): Float64Array {
  const cap = arch.attnSoftcap;
  return Float64Array.from([
    +arch.qkvBias,
    +arch.oBias,
    +arch.mlpBias,
    +arch.qkNorm,
    +arch.sandwich,
    +(arch.act === 'gelu_tanh'),
    arch.embedScale,
    arch.queryScale / (cap ?? 1), // as rope.ts folds it into q's rotary coefficients
    cap ?? 0,
    arch.finalSoftcap ?? 0,
  ]);
}

/** The rotary inverse frequencies of the config (rope_scaling applied), as the reference's tables use. */
function invFreqOf(c: ModelConfig): Float32Array {
  return inverseFrequencies(headDim(c), c.rope_theta, c.rope_scaling ?? null);
}

interface WeightCopy {
  handle: Handle;
  dataIds: object[];
}

const copies = new WeakMap<LlamaModel, WeightCopy>();

/** The model's weights in native memory, loaded (or reloaded after a weight change) on demand. */
async function nativeWeights(addon: DecodeAddon, model: LlamaModel): Promise<Handle> {
  const vars = model.variables();
  const ids = [...vars.values()].map((v) => v.dataId);
  const have = copies.get(model);
  if (have && have.dataIds.length === ids.length && have.dataIds.every((id, i) => id === ids[i])) return have.handle;
  const c = model.config;
  const arch = archOf(c);
  const names = nativeWeightNames(c, arch);
  // Snapshot before the first await (clones share data, so this is free): a setWeights landing
  // while we read must not mix versions, and the dataIds recorded must name what we copy.
  const snapshot = names.map((n) => tf.clone(vars.get(n)!));
  const dims = Int32Array.from([
    c.vocab_size,
    c.hidden_size,
    c.intermediate_size,
    c.num_hidden_layers,
    c.num_attention_heads,
    c.num_key_value_heads,
    headDim(c),
  ]);
  let handle: Handle;
  try {
    // data() may be the backend's own memory: decoderNew copies it before the clones go
    const weights = await Promise.all(
      snapshot.map(async (t, i) => {
        const data = (await t.data()) as Float32Array;
        // RMSNorm multiplies by (1 + w) in Gemma2: float32 adds, as fuseWeights' w.add(1)
        return arch.normOffset !== 0 && names[i].endsWith('norm.weight') ? data.map((x) => x + arch.normOffset) : data;
      }),
    );
    const windows = Int32Array.from(arch.windows, (w) => w ?? 0);
    handle = addon.decoderNew(dims, c.rms_norm_eps, weights, archVector(arch), windows);
  } finally {
    tf.dispose(snapshot);
  }
  // the old version's copy is left to the garbage collector: a session may still decode with it
  copies.set(model, { handle, dataIds: ids });
  return handle;
}

export class NativeDecodeSession {
  private slotRows: number[]; // original prompt index (= native cache row) of each live slot
  private readonly invTemperature: number;
  private logp: Float32Array; // [B_live * V]
  private readonly V: number;
  private disposed = false;

  private constructor(
    private readonly addon: DecodeAddon,
    private readonly weights: Handle,
    private readonly cache: Handle,
    prompts: number[][],
    V: number,
    temperature: number,
  ) {
    this.V = V;
    this.invTemperature = temperature === 0 ? 1 : 1 / temperature;
    this.slotRows = prompts.map((_, i) => i);
    // prefill each distinct prompt once, then copy its cache and log-probs to the rows sharing it
    const first = new Map<string, number>(); // prompt -> first row holding it
    const source = prompts.map((p, i) => {
      const key = p.join(',');
      const f = first.get(key);
      if (f === undefined) first.set(key, i);
      return f ?? i;
    });
    const unique = [...first.values()];
    const prefill = new Float32Array(unique.length * V);
    addon.forward(
      weights,
      cache,
      Int32Array.from(unique),
      Int32Array.from(unique, (r) => prompts[r].length),
      Int32Array.from(unique.flatMap((r) => prompts[r])),
      prefill,
      this.invTemperature,
    );
    const at = new Map(unique.map((r, i) => [r, i]));
    this.logp = new Float32Array(prompts.length * V);
    source.forEach((src, r) => {
      if (src !== r) addon.copyRow(cache, src, r);
      const i = at.get(src)!;
      this.logp.set(prefill.subarray(i * V, (i + 1) * V), r * V);
    });
  }

  /** Loads (or reuses) the model's native weights and prefills `prompts` into a fresh cache. */
  static async start(model: LlamaModel, prompts: number[][], maxLength: number, temperature: number): Promise<NativeDecodeSession> {
    const { addon, error } = loadDecodeAddon();
    if (!addon) throw new Error(`native decoder unavailable: ${error}`);
    const weights = await nativeWeights(addon, model);
    const cache = addon.cacheNew(weights, prompts.length, maxLength, invFreqOf(model.config));
    try {
      return new NativeDecodeSession(addon, weights, cache, prompts, model.config.vocab_size, temperature);
    } catch (err) {
      addon.free(cache);
      throw err;
    }
  }

  /** Original prompt index of each live slot, in slot order. */
  get rows(): readonly number[] {
    return this.slotRows;
  }

  /** Next-token log-probs of the live slots, row-major [B_live * V]. */
  async readLogProbs(): Promise<Float32Array> {
    return this.logp;
  }

  /** Keeps only the given live slots, in that order. Nothing moves: the cache is per row. */
  keep(slots: number[]): void {
    const V = this.V;
    const logp = new Float32Array(slots.length * V);
    slots.forEach((s, i) => logp.set(this.logp.subarray(s * V, (s + 1) * V), i * V));
    this.logp = logp;
    this.slotRows = slots.map((s) => this.slotRows[s]);
  }

  /** Feeds one token per live slot and computes the next log-probs, in one native call. */
  step(tokens: number[]): void {
    const n = this.slotRows.length;
    const out = new Float32Array(n * this.V);
    this.addon.forward(
      this.weights,
      this.cache,
      Int32Array.from(this.slotRows),
      new Int32Array(n).fill(1),
      Int32Array.from(tokens),
      out,
      this.invTemperature,
    );
    this.logp = out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.addon.free(this.cache);
  }
}

/**
 * A native KV cache of `rows` independent rows of up to `maxLength` positions under one weight
 * snapshot, driven row by row: what continuous batching (stream-sampler.ts) needs, where rows
 * start and end at different steps.
 */
export class NativeRows {
  private disposed = false;

  private constructor(
    private readonly addon: DecodeAddon,
    private readonly weights: Handle,
    private readonly cache: Handle,
    readonly rows: number,
    readonly maxLength: number,
    private readonly V: number,
    private readonly invTemperature: number,
  ) {}

  static async open(model: LlamaModel, rows: number, maxLength: number, temperature: number): Promise<NativeRows> {
    const { addon, error } = loadDecodeAddon();
    if (!addon) throw new Error(`native decoder unavailable: ${error}`);
    const weights = await nativeWeights(addon, model);
    const cache = addon.cacheNew(weights, rows, maxLength, invFreqOf(model.config));
    const invT = temperature === 0 ? 1 : 1 / temperature;
    return new NativeRows(addon, weights, cache, rows, maxLength, model.config.vocab_size, invT);
  }

  /**
   * Appends tokens to rows (entry e: counts[e] tokens to row slots[e], from `tokens` in entry
   * order) and returns each entry's next-token log-probs, [n * V].
   */
  forward(slots: Int32Array, counts: Int32Array, tokens: Int32Array): Float32Array {
    const out = new Float32Array(slots.length * this.V);
    this.addon.forward(this.weights, this.cache, slots, counts, tokens, out, this.invTemperature);
    return out;
  }

  /** Row dst takes row src's cache (a prompt shared by a group). */
  copyRow(src: number, dst: number): void {
    this.addon.copyRow(this.cache, src, dst);
  }

  /** Row `slot` is empty again, ready for a new sequence. */
  resetRow(slot: number): void {
    this.addon.resetRow(this.cache, slot);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.addon.free(this.cache);
  }
}
