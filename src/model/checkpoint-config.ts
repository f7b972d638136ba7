/**
 * Reading config.json and trainer_state.json of a checkpoint. config.json is Hugging Face's
 * config of a supported family (model_type llama, qwen2, qwen3 or gemma2; anything else is
 * GRPO_ERR_MODEL_TYPE listing those): fields we do not use (transformers_version, use_cache,
 * attention_dropout, pretraining_tp, ...) are ignored, missing optional fields take that
 * family's transformers defaults, and a feature we cannot run (an activation the family does
 * not use, yarn rope scaling, Qwen's use_sliding_window) is an error naming the field rather
 * than a silently different model. Family-specific fields are read in config-families.ts.
 */
import { GrpoError } from '../shared/errors.js';
import { ARCHITECTURE_CLASS, SUPPORTED_MODEL_TYPES, unsupportedModelType } from './architecture.js';
import { configError, familyFields, positiveInt, positiveNumber, type Raw } from './config-families.js';
import { validateLlamaConfig } from './llama-config.js';
import type { ModelConfig, ModelType } from './types.js';

/** What a resumable checkpoint records about the run besides weights and optimizer moments. */
export interface TrainerState {
  step: number;
  policyVersion: number;
  dataCursor: unknown;
  rng: unknown;
  config: unknown; // the resolved run config
  [key: string]: unknown;
}

function tokenId(raw: Raw, source: string, field: string): number | null {
  const v = raw[field] ?? null;
  if (v !== null && (!Number.isSafeInteger(v) || (v as number) < 0)) throw configError(source, field, v, 'null or a token id');
  return v as number | null;
}

/**
 * Every token id that ends a completion: config.json's eos_token_id (one id or a list), then the
 * ids generation_config.json adds, in order, without repeats. transformers' generate() stops at
 * generation_config's list, and chat models put their end-of-turn token only there
 * (Qwen2.5-Instruct: [<|im_end|>, <|endoftext|>]). `generationConfig` is that file's contents, or
 * null without one; a malformed eos_token_id in it is GRPO_ERR_CHECKPOINT_CONFIG naming `source`.
 */
export function stopTokenIds(config: ModelConfig, generationConfig: unknown, source = 'generation_config.json'): number[] {
  const list = (v: unknown): unknown[] => (v === null || v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const fromGen = generationConfig !== null && typeof generationConfig === 'object' ? list((generationConfig as Raw).eos_token_id) : [];
  for (const id of fromGen) {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= config.vocab_size) {
      throw configError(source, 'eos_token_id', (generationConfig as Raw).eos_token_id, `null, or token ids in [0, ${config.vocab_size})`);
    }
  }
  return [...new Set([...(list(config.eos_token_id) as number[]), ...(fromGen as number[])])];
}

/** transformers' defaults that differ between the families. */
const DEFAULTS: Record<ModelType, { maxPos: number; tie: boolean }> = {
  llama: { maxPos: 2048, tie: false },
  qwen2: { maxPos: 32768, tie: false },
  qwen3: { maxPos: 32768, tie: false },
  gemma2: { maxPos: 8192, tie: true },
};

/**
 * Turns a parsed config.json into our ModelConfig. Throws GRPO_ERR_MODEL_TYPE for an unknown
 * model_type, else GRPO_ERR_CHECKPOINT_CONFIG naming the first field that is missing,
 * malformed or describes a model we cannot run. Parsing its own output gives the same config.
 */
export function parseLlamaConfig(input: unknown, source = 'config.json'): ModelConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source} must hold a JSON object`);
  }
  const raw = input as Raw;
  const type = raw.model_type as ModelType;
  if (!SUPPORTED_MODEL_TYPES.includes(type)) throw unsupportedModelType(raw.model_type, `${source}: `);
  const architectures = raw.architectures ?? [ARCHITECTURE_CLASS[type]];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === 'string')) {
    throw configError(source, 'architectures', raw.architectures, 'a list of class names');
  }
  const tie = raw.tie_word_embeddings ?? DEFAULTS[type].tie;
  if (typeof tie !== 'boolean') throw configError(source, 'tie_word_embeddings', tie, 'true or false');

  const eosRaw = raw.eos_token_id ?? null;
  const eosOk = eosRaw === null || (Array.isArray(eosRaw) ? eosRaw : [eosRaw]).every((x) => Number.isSafeInteger(x) && x >= 0);
  if (!eosOk) throw configError(source, 'eos_token_id', eosRaw, 'null, a token id or a list of token ids');

  const numHeads = positiveInt(raw, source, 'num_attention_heads');
  const common: ModelConfig = {
    model_type: type,
    architectures: architectures as string[],
    vocab_size: positiveInt(raw, source, 'vocab_size'),
    hidden_size: positiveInt(raw, source, 'hidden_size'),
    intermediate_size: positiveInt(raw, source, 'intermediate_size'),
    num_hidden_layers: positiveInt(raw, source, 'num_hidden_layers'),
    num_attention_heads: numHeads,
    num_key_value_heads: positiveInt(raw, source, 'num_key_value_heads', numHeads), // absent = plain MHA
    max_position_embeddings: positiveInt(raw, source, 'max_position_embeddings', DEFAULTS[type].maxPos),
    rms_norm_eps: positiveNumber(raw, source, 'rms_norm_eps', 1e-6),
    rope_theta: 10_000, // familyFields reads rope_theta or rope_parameters
    tie_word_embeddings: tie,
    hidden_act: 'silu',
    bos_token_id: tokenId(raw, source, 'bos_token_id'),
    eos_token_id: eosRaw as number | number[] | null,
    pad_token_id: tokenId(raw, source, 'pad_token_id'),
    torch_dtype: 'float32', // whatever the file held, weights are float32 once loaded
    initializer_range: positiveNumber(raw, source, 'initializer_range', 0.02),
  };
  const config = { ...common, ...familyFields(type, raw, source) };
  try {
    validateLlamaConfig(config); // structure: heads divide evenly, token ids inside the vocabulary, ...
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source}: ${message}`, { cause: err });
  }
  return config;
}

/** The same parser under a name that is less tied to Llama. */
export const parseModelConfig = parseLlamaConfig;

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

/** Fields transformers types as float: a whole number must still be written 3.0, not 3. */
const FLOAT_FIELDS = new Set([
  'rms_norm_eps',
  'rope_theta',
  'initializer_range',
  'attn_logit_softcapping',
  'final_logit_softcapping',
  'factor',
  'low_freq_factor',
  'high_freq_factor',
]);
const FLOAT_MARK = '__grpo_float__';

/**
 * config.json text for a config. transformers 5 validates configs strictly, and JSON.stringify
 * writes 3.0 as 3, which it rejects for a float field ("expected float, got int"); whole
 * numbers in FLOAT_FIELDS are therefore written with a ".0".
 */
export function configJsonText(config: object): string {
  const text = JSON.stringify(
    config,
    (key, value: unknown) =>
      FLOAT_FIELDS.has(key) && typeof value === 'number' && Number.isInteger(value) && Math.abs(value) < 1e21 ? `${FLOAT_MARK}${value}` : value,
    2,
  );
  return text.replace(new RegExp(`"${FLOAT_MARK}(-?\\d+)"`, 'g'), '$1.0') + '\n';
}
