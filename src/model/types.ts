/**
 * Shared types of the policy model, tokenizers and checkpoints. Field names of LlamaConfig
 * follow Hugging Face's LlamaConfig (config.json) so a checkpoint opens in `transformers`.
 */
import type { tf } from '../engine/tf.js';

/** Hugging Face LlamaConfig fields we read and write (config.json). */
export interface LlamaConfig {
  model_type: 'llama';
  architectures: string[]; // ['LlamaForCausalLM']
  vocab_size: number;
  hidden_size: number; // d_model
  intermediate_size: number; // SwiGLU hidden width
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number; // GQA: divides num_attention_heads
  head_dim?: number; // default hidden_size / num_attention_heads
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  hidden_act: 'silu';
  attention_bias: false;
  mlp_bias: false;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  torch_dtype: 'float32';
  initializer_range: number;
}

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
