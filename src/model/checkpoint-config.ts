/**
 * Reading config.json and trainer_state.json of a checkpoint. config.json is Hugging Face's
 * LlamaConfig: fields we do not use (transformers_version, use_cache, attention_dropout,
 * pretraining_tp, a null rope_scaling, ...) are ignored, missing optional fields take
 * transformers' defaults, and a feature we cannot run (biases, rope_scaling, another
 * activation) is an error naming the field rather than a silently different model.
 */
import { GrpoError } from '../shared/errors.js';
import { validateLlamaConfig } from './llama-config.js';
import type { LlamaConfig } from './types.js';

/** What a resumable checkpoint records about the run besides weights and optimizer moments. */
export interface TrainerState {
  step: number;
  policyVersion: number;
  dataCursor: unknown;
  rng: unknown;
  config: unknown; // the resolved run config
  [key: string]: unknown;
}

type Raw = Record<string, unknown>;

function configError(source: string, field: string, value: unknown, expected: string): GrpoError {
  const shown = value === undefined ? 'missing' : `${JSON.stringify(value)}`;
  return new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source}: field ${field} is ${shown}, expected ${expected}`);
}

function positiveInt(raw: Raw, source: string, field: string, fallback?: number): number {
  const v = raw[field] ?? fallback;
  if (!Number.isSafeInteger(v) || (v as number) < 1) throw configError(source, field, raw[field], 'a positive integer');
  return v as number;
}

function positiveNumber(raw: Raw, source: string, field: string, fallback: number): number {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw configError(source, field, raw[field], 'a positive number');
  return v;
}

function tokenId(raw: Raw, source: string, field: string): number | null {
  const v = raw[field] ?? null;
  if (v !== null && (!Number.isSafeInteger(v) || (v as number) < 0)) throw configError(source, field, v, 'null or a token id');
  return v as number | null;
}

function mustBe(raw: Raw, source: string, field: string, allowed: unknown, why: string): void {
  const v = raw[field];
  if (v !== undefined && v !== allowed) throw configError(source, field, v, `${JSON.stringify(allowed)} (${why})`);
}

/**
 * Turns a parsed config.json into our LlamaConfig. Throws GRPO_ERR_CHECKPOINT_CONFIG naming the
 * first field that is missing, malformed or describes a model we cannot run.
 */
export function parseLlamaConfig(input: unknown, source = 'config.json'): LlamaConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source} must hold a JSON object`);
  }
  const raw = input as Raw;
  if (raw.model_type !== 'llama') throw configError(source, 'model_type', raw.model_type, '"llama"');
  mustBe(raw, source, 'hidden_act', 'silu', 'the Llama MLP uses SiLU');
  mustBe(raw, source, 'attention_bias', false, 'biases are not supported');
  mustBe(raw, source, 'mlp_bias', false, 'biases are not supported');
  if (raw.rope_scaling !== undefined && raw.rope_scaling !== null) {
    throw configError(source, 'rope_scaling', raw.rope_scaling, 'null (scaled rotary embeddings are not supported)');
  }
  const architectures = raw.architectures ?? ['LlamaForCausalLM'];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === 'string')) {
    throw configError(source, 'architectures', raw.architectures, 'a list of class names');
  }
  const tie = raw.tie_word_embeddings ?? false; // LlamaConfig's default
  if (typeof tie !== 'boolean') throw configError(source, 'tie_word_embeddings', tie, 'true or false');

  const eosRaw = raw.eos_token_id ?? null;
  const eosOk = eosRaw === null || (Array.isArray(eosRaw) ? eosRaw : [eosRaw]).every((x) => Number.isSafeInteger(x) && x >= 0);
  if (!eosOk) throw configError(source, 'eos_token_id', eosRaw, 'null, a token id or a list of token ids');

  const numHeads = positiveInt(raw, source, 'num_attention_heads');
  const config: LlamaConfig = {
    model_type: 'llama',
    architectures: architectures as string[],
    vocab_size: positiveInt(raw, source, 'vocab_size'),
    hidden_size: positiveInt(raw, source, 'hidden_size'),
    intermediate_size: positiveInt(raw, source, 'intermediate_size'),
    num_hidden_layers: positiveInt(raw, source, 'num_hidden_layers'),
    num_attention_heads: numHeads,
    num_key_value_heads: positiveInt(raw, source, 'num_key_value_heads', numHeads), // absent = plain MHA
    max_position_embeddings: positiveInt(raw, source, 'max_position_embeddings', 2048),
    rms_norm_eps: positiveNumber(raw, source, 'rms_norm_eps', 1e-6),
    rope_theta: positiveNumber(raw, source, 'rope_theta', 10_000),
    tie_word_embeddings: tie,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: tokenId(raw, source, 'bos_token_id'),
    eos_token_id: eosRaw as number | number[] | null,
    pad_token_id: tokenId(raw, source, 'pad_token_id'),
    torch_dtype: 'float32', // whatever the file held, weights are float32 once loaded
    initializer_range: positiveNumber(raw, source, 'initializer_range', 0.02),
  };
  if (raw.head_dim !== undefined && raw.head_dim !== null) config.head_dim = positiveInt(raw, source, 'head_dim');
  try {
    validateLlamaConfig(config); // structure: heads divide evenly, token ids inside the vocabulary, ...
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source}: ${message}`, { cause: err });
  }
  return config;
}

/** Checks trainer_state.json's contents. Throws GRPO_ERR_CHECKPOINT_TRAINER_STATE naming the field. */
export function parseTrainerState(input: unknown, source = 'trainer_state.json'): TrainerState {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_TRAINER_STATE', `${source} must hold a JSON object`);
  }
  const raw = input as Raw;
  for (const field of ['step', 'policyVersion']) {
    const v = raw[field];
    if (!Number.isSafeInteger(v) || (v as number) < 0) {
      throw new GrpoError(
        'GRPO_ERR_CHECKPOINT_TRAINER_STATE',
        `${source}: field ${field} is ${v === undefined ? 'missing' : JSON.stringify(v)}, expected a non-negative integer`,
      );
    }
  }
  return raw as TrainerState;
}
