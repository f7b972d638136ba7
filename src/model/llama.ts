/**
 * The policy model: a decoder-only transformer with the architecture and parameter names of
 * Hugging Face's LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM or Gemma2ForCausalLM
 * (config.model_type picks; see architecture.ts), so checkpoints open in PyTorch `transformers`
 * and HF checkpoints of those families load here. Parameters are tf.Variables keyed by HF name;
 * the math lives in llama-forward.ts and the position tables in rope.ts. Plain tfjs ops only,
 * so every backend runs it unchanged. (The class keeps the name it had when Llama was the only
 * family.)
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import { maskedNormaliser, type AllowedMask } from './allowed-mask.js';
import { DecodeSession } from './kv-cache.js';
import { archOf } from './architecture.js';
import { validateLlamaConfig } from './llama-config.js';
import { headLogProbs } from './head-logprobs.js';
import { decoderLayers, embed, fuseWeights, headLogits, rmsNorm, type FusedWeights } from './llama-forward.js';
import { isNormWeight, llamaParamShapes, validateLlamaWeights } from './llama-params.js';
import type { LoraAdapters } from './lora.js';
import { RopeTables } from './rope.js';
import { allowedFrom, checkSharedPrefix, prefixHidden, type SharedPrefix } from './shared-prefix.js';
import type { LlamaConfig, NamedHostTensors } from './types.js';

export interface ForwardOptions {
  /**
   * Per row, how many leading positions are padding (left-padded batch): those keys are masked
   * and rotary positions start at 0 on each row's first real token. Omit for unpadded rows.
   */
  leftPad?: ArrayLike<number>;
  /** Gradient checkpointing: recompute each decoder layer in backward (config gradient_checkpointing). */
  checkpoint?: boolean;
  /**
   * Training forward: the seed of this forward's LoRA dropout masks (lora-side.ts). Used only when
   * attached adapters have dropout > 0; omitted (sampling, eval, old log-probs), no dropout.
   */
  dropoutSeed?: number;
}

/** How attached adapters enter a forward without dropout: folded into W, or beside it (lora-side.ts). */
export type AdapterPath = 'merged' | 'side';

export interface LogProbOptions extends ForwardOptions {
  temperature?: number; // logits are divided by it; 0 counts as 1 (as for greedy samples)
  withEntropy?: boolean; // also return the entropy of each predicted distribution
  /**
   * Grammar masks of the B * (T - 1) predicted positions (allowed-mask.ts): constrained positions
   * are renormalised over their allowed ids, as the sampler reported them; entropy too.
   */
  allowed?: AllowedMask;
  /**
   * Rows that share their prompt (GRPO groups), laid out as shared-prefix.ts says: each distinct
   * prompt runs once. Positions before the completion (before column P - 1) get log-probability
   * and entropy 0. Not with `checkpoint`.
   */
  prefix?: SharedPrefix;
}

export class LlamaModel {
  readonly config: LlamaConfig;
  private readonly params: Map<string, tf.Variable>;
  private readonly rope: RopeTables;
  private readonly ownsParams: boolean; // false for a base view, which shares its parent's weights
  private adapters: LoraAdapters | null = null;
  private adapterPath: AdapterPath = 'merged';
  private disposed = false;

  private constructor(config: LlamaConfig, params: Map<string, tf.Variable>, ownsParams = true) {
    this.config = config;
    this.params = params;
    this.ownsParams = ownsParams;
    this.rope = new RopeTables(config);
  }

  /**
   * Fresh weights as Hugging Face initialises them: normal(0, initializer_range) for linear and
   * embedding weights (the pad token's embedding row zeroed), zero biases, RMSNorm weights that
   * make the norm multiply by 1 (ones; zeros for Gemma's 1 + w). Drawn on the host from `seed`,
   * so the same seed gives the same model on every backend.
   */
  static create(config: LlamaConfig, seed: number): LlamaModel {
    validateLlamaConfig(config);
    const rng = new Rng(seed);
    const std = config.initializer_range;
    const normInit = 1 - archOf(config).normOffset;
    const weights: NamedHostTensors = new Map();
    for (const [name, shape] of llamaParamShapes(config)) {
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (isNormWeight(name)) data.fill(normInit);
      else if (name.endsWith('.bias')) data.fill(0);
      else for (let i = 0; i < data.length; i++) data[i] = std * rng.normal();
      if (name === 'model.embed_tokens.weight' && config.pad_token_id !== null) {
        data.fill(0, config.pad_token_id * config.hidden_size, (config.pad_token_id + 1) * config.hidden_size);
      }
      weights.set(name, { shape, data });
    }
    return LlamaModel.fromHostTensors(config, weights);
  }

  /** Loads weights by HF name (copied). Throws GRPO_ERR_CHECKPOINT_MISMATCH on a name/shape mismatch. */
  static fromHostTensors(config: LlamaConfig, weights: NamedHostTensors, opts: { trainable?: boolean } = {}): LlamaModel {
    validateLlamaConfig(config);
    validateLlamaWeights(config, weights);
    const trainable = opts.trainable ?? true;
    const params = new Map<string, tf.Variable>();
    for (const [name, shape] of llamaParamShapes(config)) {
      const src = weights.get(name)!;
      const init = tf.tensor(src.data.slice(), shape, 'float32');
      params.set(name, tf.variable(init, trainable));
      init.dispose();
    }
    return new LlamaModel(config, params);
  }

  /** Parameters by HF name, in llamaParamShapes order (no lm_head.weight when tied). */
  variables(): Map<string, tf.Variable> {
    this.checkAlive();
    return new Map(this.params);
  }

  /**
   * What training updates: the LoRA adapters' A and B (by PEFT name) when adapters are attached,
   * else every parameter (by HF name).
   */
  trainableVariables(): Map<string, tf.Variable> {
    this.checkAlive();
    return this.adapters ? this.adapters.variables() : this.variables();
  }

  /**
   * Copies of the current weights by HF name; with `withAdapters`, the weights the model computes
   * with (attached LoRA adapters merged in), else its own (the frozen base under LoRA).
   */
  async toHostTensors(opts: { withAdapters?: boolean } = {}): Promise<NamedHostTensors> {
    this.checkAlive();
    const merged = opts.withAdapters && this.adapters ? this.mergedWeights() : null;
    const out: NamedHostTensors = new Map();
    try {
      for (const [name, v] of merged?.weights ?? this.params) {
        // data() may hand back the backend's own buffer, so copy before it leaves
        out.set(name, { shape: [...v.shape], data: new Float32Array(await v.data<'float32'>()) });
      }
    } finally {
      merged?.free();
    }
    return out;
  }

  /** Overwrites the weights in place (e.g. a new policy version). Validated like fromHostTensors. */
  setWeights(weights: NamedHostTensors): void {
    this.checkAlive();
    validateLlamaWeights(this.config, weights);
    for (const [name, v] of this.params) {
      const src = weights.get(name)!;
      const t = tf.tensor(src.data.slice(), v.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  }

  /** An independent copy (own variables), e.g. the frozen reference model with trainable false. */
  clone(opts: { trainable?: boolean } = {}): LlamaModel {
    this.checkAlive();
    const trainable = opts.trainable ?? this.trainable();
    const params = new Map<string, tf.Variable>();
    for (const [name, v] of this.params) params.set(name, tf.variable(v, trainable));
    return new LlamaModel(this.config, params);
  }

  /**
   * Attaches LoRA adapters (lora.ts): every forward then computes with W + (alpha/r) B A for the
   * adapted layers, while this model's own weights stay as they are (freeze them by loading with
   * trainable: false). null detaches. The caller owns the adapters. `path` 'side' computes
   * x W^T + s (x A^T) B^T instead of merging (config lora_sampling); a training forward with
   * dropout takes the side path whatever `path` says.
   */
  setAdapters(adapters: LoraAdapters | null, path: AdapterPath = 'merged'): void {
    this.checkAlive();
    this.adapters = adapters;
    this.adapterPath = path;
  }

  /** The attached LoRA adapters, if any. */
  getAdapters(): LoraAdapters | null {
    return this.adapters;
  }

  /**
   * The same weights without adapters, shared, not copied: with LoRA, the frozen base is the KL
   * reference at no memory cost. Disposing the view frees only its position tables.
   */
  baseView(): LlamaModel {
    this.checkAlive();
    return new LlamaModel(this.config, this.params, false);
  }

  /** Full causal forward: ids [B, T] int32 -> logits [B, T, V]. Synchronous; use inside tf.tidy. */
  logits(ids: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    const [B, T] = this.checkIds(ids, 1, opts);
    return tf.tidy(() => {
      const w = this.fused(opts);
      const h = this.hidden(w, ids, opts); // [B*T, d]
      return headLogits(this.config, w, h).reshape([B, T, this.config.vocab_size]);
    });
  }

  /**
   * Per-token log-probabilities of the given tokens: logp[b, t] = log p(ids[b, t+1] | ids[b, :t+1])
   * under log_softmax(logits / temperature), renormalised over opts.allowed at the positions it
   * constrains (a grammar's allowed sets), [B, T-1]; optional entropy of each of those
   * distributions, [B, T-1]. Differentiable; synchronous, use inside tf.tidy / variableGrads.
   */
  tokenLogProbs(ids: tf.Tensor2D, opts: LogProbOptions = {}): { logp: tf.Tensor2D; entropy?: tf.Tensor2D } {
    const [B, T] = this.checkIds(ids, 2, opts);
    const temperature = opts.temperature ?? 1;
    if (!Number.isFinite(temperature) || temperature < 0) {
      throw new GrpoError('GRPO_ERR_MODEL_INPUT', `temperature is ${temperature}, it must be finite and >= 0`);
    }
    const prefix = opts.prefix;
    if (prefix) {
      checkSharedPrefix(prefix, B, T);
      if (opts.checkpoint) throw new GrpoError('GRPO_ERR_MODEL_INPUT', 'a shared prefix and gradient checkpointing do not combine; pass one');
    }
    const d = this.config.hidden_size;
    return tf.tidy(() => {
      const w = this.fused(opts);
      if (prefix) {
        // only the positions predicting the completion columns P .. T-1: [B * C] (shared-prefix.ts)
        const P = prefix.length;
        const C = T - P;
        const h = prefixHidden(this.config, this.rope, w, ids, opts.leftPad ?? new Int32Array(B), prefix);
        const targets = ids.slice([0, P], [B, C]).reshape<tf.Tensor1D>([-1]);
        const allowed = opts.allowed ? allowedFrom(opts.allowed, B, T, P) : undefined;
        const r = this.headLogProbs(w, h, targets, temperature, allowed, opts.withEntropy === true);
        // prompt positions predict nothing trained: 0 there (every mask and metric skips them)
        const widen = (x: tf.Tensor1D): tf.Tensor2D => tf.concat([tf.zeros([B, P - 1]), x.reshape([B, C])], 1) as tf.Tensor2D;
        return r.entropy ? { logp: widen(r.logp), entropy: widen(r.entropy) } : { logp: widen(r.logp) };
      }
      // the last position predicts nothing we score: drop it before the [N, V] head
      const h = this.hidden(w, ids, opts)
        .reshape([B, T, d])
        .slice([0, 0, 0], [B, T - 1, d])
        .reshape<tf.Tensor2D>([B * (T - 1), d]);
      const targets = ids.slice([0, 1], [B, T - 1]).reshape<tf.Tensor1D>([-1]); // [N']
      const r = this.headLogProbs(w, h, targets, temperature, opts.allowed, opts.withEntropy === true);
      const logp = r.logp.reshape([B, T - 1]) as tf.Tensor2D;
      return r.entropy ? { logp, entropy: r.entropy.reshape([B, T - 1]) as tf.Tensor2D } : { logp };
    });
  }

  /**
   * Starts batched incremental decoding of `prompts` (prefill with a KV cache); used by
   * sample() in sampling.ts. The caller disposes the session.
   */
  startDecoding(prompts: number[][], maxLength: number, temperature: number): DecodeSession {
    this.checkAlive();
    this.rope.ensure(maxLength);
    if (!this.adapters) return new DecodeSession(this.config, this.rope, this.params, prompts, temperature);
    if (this.adapterPath === 'side') return new DecodeSession(this.config, this.rope, this.params, prompts, temperature, this.adapters.sideSpec(null));
    // the session snapshots its weights, so the merged ones are freed once it has its copy
    const merged = this.mergedWeights();
    try {
      return new DecodeSession(this.config, this.rope, merged.weights, prompts, temperature);
    } finally {
      merged.free();
    }
  }

  numParams(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownsParams) for (const v of this.params.values()) v.dispose();
    this.rope.dispose();
  }

  /**
   * forwardParams() kept outside any tidy, by HF name, and `free` for the merged tensors it made
   * (the weights no adapter touches are the model's own variables and stay).
   */
  private mergedWeights(): { weights: Map<string, tf.Tensor>; free: () => void } {
    const names = [...this.params.keys()];
    const merged = tf.tidy(() => names.map((n) => this.forwardParams().get(n)!));
    return {
      weights: new Map(names.map((n, i) => [n, merged[i]!])),
      free: () => tf.dispose(merged.filter((t, i) => t !== this.params.get(names[i]!))),
    };
  }

  /** The weights a forward uses: the model's own, with the adapters merged in when attached. */
  private forwardParams(): Map<string, tf.Tensor> {
    return this.adapters ? this.adapters.apply(this.params) : this.params;
  }

  /**
   * The fused weights of a forward: adapters merged in, or beside the frozen weights (the side
   * path, and always under LoRA dropout in a training forward, where each layer's input is
   * dropped on the adapter path only).
   */
  private fused(opts: ForwardOptions): FusedWeights {
    const ad = this.adapters;
    const dropout = ad !== null && ad.spec.dropout > 0 && opts.dropoutSeed !== undefined;
    if (ad !== null && (dropout || this.adapterPath === 'side')) return fuseWeights(this.config, this.params, ad.sideSpec(dropout ? opts.dropoutSeed! : null));
    return fuseWeights(this.config, this.forwardParams());
  }

  private trainable(): boolean {
    return this.params.values().next().value?.trainable ?? true;
  }

  /**
   * log p(target) of each position under log_softmax(logits / temperature), renormalised over
   * `allowed` where it constrains, and optionally the entropy: h [N, d], targets [N] -> [N] each.
   */
  private headLogProbs(
    w: FusedWeights,
    h: tf.Tensor2D,
    targets: tf.Tensor1D,
    temperature: number,
    allowed: AllowedMask | undefined,
    withEntropy: boolean,
  ): { logp: tf.Tensor1D; entropy?: tf.Tensor1D } {
    const V = this.config.vocab_size;
    const N = h.shape[0];
    if (!allowed && w.arch.finalSoftcap === null) {
      // chunked head: a [N, V] block never exists whole (head-logprobs.ts); Gemma2's final
      // logit soft-capping takes the full path below
      return headLogProbs(rmsNorm(h, w.norm, this.config.rms_norm_eps), w.head, targets, { temperature, withEntropy });
    }
    let z = headLogits(this.config, w, h); // [N, V]
    if (temperature !== 0 && temperature !== 1) z = z.mul<tf.Tensor2D>(1 / temperature);
    const lsm = tf.logSoftmax(z); // [N, V]
    // each row's target entry of the flat [N * V] block: a gather, no [N, V] one-hot
    const flat = tf.range(0, N, 1, 'int32').mul(tf.scalar(V, 'int32')).add(targets);
    const full = tf.gather(lsm.reshape([-1]), flat) as tf.Tensor1D; // [N]
    if (!allowed) return withEntropy ? { logp: full, entropy: tf.exp(lsm).mul(lsm).sum(1).neg() as tf.Tensor1D } : { logp: full };
    const m = maskedNormaliser(lsm, allowed, withEntropy); // log Z, entropy [N]
    const logp = full.sub<tf.Tensor1D>(m.logZ);
    return m.entropy ? { logp, entropy: m.entropy } : { logp };
  }

  /** Residual stream after every decoder layer (before the final norm): [B*T, d]. */
  private hidden(w: FusedWeights, ids: tf.Tensor2D, opts: ForwardOptions): tf.Tensor2D {
    const [B, T] = ids.shape;
    let rope;
    if (opts.leftPad) {
      const pos = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) pos[b * T + t] = Math.max(0, t - opts.leftPad[b]);
      }
      rope = this.rope.gathered(pos, B, T);
    } else {
      rope = this.rope.contiguous(T);
    }
    const masks = this.rope.masks(T, opts.leftPad);
    return decoderLayers(this.config, w, embed(w, ids), B, T, rope, masks, undefined, opts.checkpoint === true).h;
  }

  private checkIds(ids: tf.Tensor2D, minT: number, opts: ForwardOptions): [number, number] {
    this.checkAlive();
    if (ids.rank !== 2 || ids.dtype !== 'int32') {
      throw new GrpoError('GRPO_ERR_MODEL_INPUT', `ids must be an int32 [B, T] tensor, got ${ids.dtype} [${ids.shape}]`);
    }
    const [B, T] = ids.shape;
    if (T < minT) throw new GrpoError('GRPO_ERR_MODEL_INPUT', `ids have ${T} positions, need at least ${minT}`);
    this.rope.ensure(T);
    if (opts.leftPad && opts.leftPad.length !== B) {
      throw new GrpoError('GRPO_ERR_MODEL_INPUT', `leftPad has ${opts.leftPad.length} rows, ids have ${B}`);
    }
    return [B, T];
  }

  private checkAlive(): void {
    if (this.disposed) throw new GrpoError('GRPO_ERR_MODEL_DISPOSED', 'this model was disposed; create or load a new one');
  }
}
