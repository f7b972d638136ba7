/**
 * Shared types of the policy model, tokenizers and checkpoints. Field names of ModelConfig
 * follow Hugging Face's config classes (config.json) so a checkpoint opens in `transformers`.
 */
import type { tf } from '../engine/tf.js';

/** The decoder families we run; `model_type` in config.json picks one (see architecture.ts). */
export type ModelType = 'llama' | 'qwen2' | 'qwen3' | 'gemma2';

/**
 * Scaled rotary embeddings (config.json `rope_scaling`, HF's `rope_type`, older files say `type`).
 * linear: every inverse frequency divided by `factor`. llama3: Llama 3.1's band-wise scaling,
 * which divides low frequencies by `factor`, keeps high ones and blends between.
 */
export type RopeScaling =
  | { rope_type: 'linear'; factor: number }
  | {
      rope_type: 'llama3';
      factor: number;
      low_freq_factor: number;
      high_freq_factor: number;
      original_max_position_embeddings: number;
    };

/**
 * Hugging Face config fields we read and write (config.json), the union over the supported
 * model types; the fields only one family has are optional and set only for that family, so
 * config.json keeps the family's own layout.
 */
export interface ModelConfig {
  model_type: ModelType;
  architectures: string[]; // e.g. ['LlamaForCausalLM']
  vocab_size: number;
  hidden_size: number; // d_model
  intermediate_size: number; // gated MLP hidden width
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number; // GQA: divides num_attention_heads
  head_dim?: number; // default hidden_size / num_attention_heads
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: RopeScaling | null; // absent = plain rotary embeddings
  tie_word_embeddings: boolean;
  /** silu (SwiGLU) for llama and qwen; gelu_pytorch_tanh (GeGLU) for gemma2. */
  hidden_act: 'silu' | 'gelu_pytorch_tanh';
  hidden_activation?: 'gelu_pytorch_tanh'; // gemma2 names its MLP activation so too
  attention_bias?: boolean; // llama, qwen3, gemma2: biases on q/k/v/o (qwen2 always has q/k/v biases)
  mlp_bias?: boolean; // llama: biases on gate/up/down
  query_pre_attn_scalar?: number; // gemma2: attention scores scale by its -1/2 power, not head_dim's
  attn_logit_softcapping?: number | null; // gemma2: scores -> cap * tanh(scores / cap)
  final_logit_softcapping?: number | null; // gemma2: logits -> cap * tanh(logits / cap)
  sliding_window?: number | null; // gemma2: sliding layers see only the last sliding_window positions
  layer_types?: ('sliding_attention' | 'full_attention')[]; // gemma2: which layers slide (default: even ones)
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  torch_dtype: 'float32'; // weights are float32 in memory, whatever the file held
  initializer_range: number;
}

/** The name the config had when only Llama was supported; every model type fits it. */
export type LlamaConfig = ModelConfig;

export type { HostTensor, NamedHostTensors } from '../shared/host-tensor.js';
export type NamedTensors = Map<string, tf.Tensor>;

export interface Tokenizer {
  readonly kind: 'char' | 'hf';
  readonly vocabSize: number;
  readonly bosId: number | null;
  /**
   * Whether a prompt starts with BOS, as the tokenizer's own post-processor decides (Llama: yes,
   * Qwen2: no, though its config names a bos_token_id). Absent = true when there is a bosId.
   */
  readonly addsBos?: boolean;
  readonly eosId: number;
  /**
   * Every token that ends a completion: eosId first, then the other end ids the checkpoint lists
   * (config.json's and generation_config.json's eos_token_id: Llama-3.1-Instruct's <|eot_id|>,
   * Gemma-2-it's <end_of_turn>, Qwen2.5-Instruct's <|endoftext|>), as transformers' generate() stops.
   */
  readonly stopIds: readonly number[];
  readonly padId: number;
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Contents of tokenizer.json (Hugging Face format), so the checkpoint opens elsewhere. */
  toJSON(): unknown;
}

/** Options of the batched KV-cache sampler. */
export interface SampleOptions {
  maxNewTokens: number;
  temperature: number; // 0 = greedy
  topK: number; // 0 = off
  topP: number; // 1 = off
  stopTokens: number[]; // generation of a row ends after emitting one of these
  seed: number; // sampling is reproducible for the same seed, weights and prompts
  /**
   * Grammar hook: called before each step with, per live row, the tokens generated so far;
   * returns per row the allowed token ids (null = all allowed). Rows with an empty set stop.
   */
  allowedTokens?: (generated: number[][], rows: number[]) => (Int32Array | number[] | null)[];
  /** 'auto' (default): the native rollout decoder when it supports the model; see decode-path.ts. */
  decoder?: 'auto' | 'native' | 'reference';
}

export interface SampleResult {
  tokens: number[][]; // per row, generated token ids (stop token included when hit)
  /**
   * Per row, log p of each generated token: log_softmax(logits / temperature) (temperature 0
   * counts as 1) over the tokens the grammar allowed at that step, i.e. renormalised over
   * `allowed` (the full vocabulary where no grammar constrained the step), before top-k/top-p
   * truncation. The learner's tokenLogProbs with the same temperature and the same allowed sets
   * gives the same numbers, so these serve as GRPO's behaviour log-probabilities (oldLogp).
   */
  logprobs: number[][];
  /**
   * Only when a grammar hook was given: per row and generated token, the allowed token ids it was
   * drawn from (ascending), or null where the hook allowed every token.
   */
  allowed?: (number[] | null)[][];
  finishReason: ('stop' | 'length' | 'grammar')[];
}
