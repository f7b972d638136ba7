/**
 * The native rollout decoder (native/src/decode.cc, addon grpo_decode.node): a Llama forward that
 * holds its own copy of the weights and its own KV cache in native memory and runs one whole
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
import { headDim, llamaParamShapes } from './llama-params.js';
import type { LlamaModel } from './llama.js';
import type { LlamaConfig } from './types.js';

/** Opaque native handle (a JS external); freed by `free` or at garbage collection. */
type Handle = { readonly __native: unique symbol };

interface DecodeAddon {
  decoderNew(dims: Int32Array, eps: number, weights: Float32Array[]): Handle;
  cacheNew(decoder: Handle, rows: number, maxLen: number, theta: number): Handle;
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
 * Why the native decoder cannot run this model, or null when it can: it implements exactly the
 * Llama architecture of llama-forward.ts (the parameter names and shapes of llamaParamShapes).
 */
export function nativeUnsupported(model: LlamaModel): string | null {
  const c = model.config as LlamaConfig & Record<string, unknown>;
  // it copies the model's own weights; attached LoRA adapters are merged only by the tfjs forward
  if (model.getAdapters() !== null) return 'LoRA adapters attached (lora_sampling: side; merged weights decode natively)';
  if (c.model_type !== 'llama') return `model_type ${String(c.model_type)}`;
  if (c.hidden_act !== 'silu') return `hidden_act ${String(c.hidden_act)}`;
  if (c.attention_bias || c.mlp_bias) return 'attention or MLP biases';
  // a config field this decoder does not know (rope_scaling, sliding windows, soft-capping...)
  // may change the math: anything set beyond the fields it implements sends the model to tfjs
  for (const [key, value] of Object.entries(c)) {
    if (!KNOWN_CONFIG_KEYS.has(key) && value !== null && value !== undefined && value !== false) return `config field ${key}`;
  }
  const want = llamaParamShapes(model.config);
  const have = model.variables();
  if (have.size !== want.size) return `${have.size} parameters where Llama has ${want.size}`;
  for (const [name, shape] of want) {
    const v = have.get(name);
    if (!v || v.shape.join() !== shape.join()) return `parameter ${name} missing or of another shape`;
  }
  return null;
}

/** LlamaConfig's fields (types.ts) and Hugging Face bookkeeping that does not change the math. */
const KNOWN_CONFIG_KEYS = new Set([
  'model_type', 'architectures', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
  'num_attention_heads', 'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'rms_norm_eps',
  'rope_theta', 'tie_word_embeddings', 'hidden_act', 'attention_bias', 'mlp_bias', 'bos_token_id',
  'eos_token_id', 'pad_token_id', 'torch_dtype', 'initializer_range',
  'transformers_version', 'use_cache', 'attention_dropout', 'pretraining_tp', '_name_or_path',
]);

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
  const names = ['model.embed_tokens.weight'];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const part of [
      'input_layernorm',
      'self_attn.q_proj',
      'self_attn.k_proj',
      'self_attn.v_proj',
      'self_attn.o_proj',
      'post_attention_layernorm',
      'mlp.gate_proj',
      'mlp.up_proj',
      'mlp.down_proj',
    ]) {
      names.push(`model.layers.${i}.${part}.weight`);
    }
  }
  names.push('model.norm.weight', c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
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
    const weights = await Promise.all(snapshot.map(async (t) => (await t.data()) as Float32Array));
    handle = addon.decoderNew(dims, c.rms_norm_eps, weights);
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
    const cache = addon.cacheNew(weights, prompts.length, maxLength, model.config.rope_theta);
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
    const cache = addon.cacheNew(weights, rows, maxLength, model.config.rope_theta);
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
