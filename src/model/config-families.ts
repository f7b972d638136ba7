/**
 * The config.json fields only some model families have, read with each family's transformers
 * defaults (LlamaConfig, Qwen2Config, Qwen3Config, Gemma2Config). A value that would make the
 * model something we do not compute is an error naming the field, never ignored.
 */
import { GrpoError } from '../shared/errors.js';
import type { ModelConfig, ModelType, RopeScaling } from './types.js';

export type Raw = Record<string, unknown>;

export function configError(source: string, field: string, value: unknown, expected: string): GrpoError {
  const shown = value === undefined ? 'missing' : `${JSON.stringify(value)}`;
  return new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source}: field ${field} is ${shown}, expected ${expected}`);
}

export function positiveInt(raw: Raw, source: string, field: string, fallback?: number): number {
  const v = raw[field] ?? fallback;
  if (!Number.isSafeInteger(v) || (v as number) < 1) throw configError(source, field, raw[field], 'a positive integer');
  return v as number;
}

export function positiveNumber(raw: Raw, source: string, field: string, fallback: number): number {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw configError(source, field, raw[field], 'a positive number');
  return v;
}

function bool(raw: Raw, source: string, field: string, fallback: boolean): boolean {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'boolean') throw configError(source, field, v, 'true or false');
  return v;
}

/** A positive number, or null when the field is null (how Gemma2 configs turn capping off). */
function capOrNull(raw: Raw, source: string, field: string, fallback: number): number | null {
  if (raw[field] === null) return null;
  return positiveNumber(raw, source, field, fallback);
}

function mustBe(raw: Raw, source: string, field: string, allowed: unknown, why: string): void {
  const v = raw[field];
  if (v !== undefined && v !== null && v !== allowed) throw configError(source, field, v, `${JSON.stringify(allowed)} (${why})`);
}

/** head_dim when the file gives one (null counts as absent), else `fallback` (undefined = hidden / heads). */
function headDimField(raw: Raw, source: string, fallback?: number): { head_dim?: number } {
  if (raw.head_dim === undefined || raw.head_dim === null) return fallback === undefined ? {} : { head_dim: fallback };
  return { head_dim: positiveInt(raw, source, 'head_dim') };
}

/**
 * A rope_scaling object (or transformers 5's flat rope_parameters): rope_type "default" means
 * none; "linear" and "llama3" are computed (see rope.ts); dynamic NTK, yarn, longrope and the
 * rest are rejected, since positions past the original context would silently differ from
 * transformers'.
 */
function scalingOf(r: Raw, source: string, field: string): RopeScaling | null {
  const type = r.rope_type ?? r.type ?? 'default';
  const where = `${source} ${field}`;
  const num = (key: string, fallback?: number): number => positiveNumber(r, where, key, fallback as number);
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { rope_type: 'linear', factor: num('factor') };
    case 'llama3':
      return {
        rope_type: 'llama3',
        factor: num('factor'),
        low_freq_factor: num('low_freq_factor', 1),
        high_freq_factor: num('high_freq_factor', 4),
        original_max_position_embeddings: positiveInt(r, where, 'original_max_position_embeddings', 8192),
      };
    default:
      throw configError(source, `${field}.rope_type`, type, '"default", "linear" or "llama3" (other scalings are not supported)');
  }
}

/**
 * rope_theta and rope_scaling, from transformers 4's top-level fields or transformers 5's
 * `rope_parameters` ({rope_theta, rope_type, factor, ...}); a file with both must agree.
 * A per-layer-type rope_parameters (keyed by attention kind, as Gemma 3 has) is refused.
 */
export function parseRope(raw: Raw, source: string): { rope_theta: number; rope_scaling?: RopeScaling } {
  const legacyScaling = raw.rope_scaling ?? null;
  if (legacyScaling !== null && (typeof legacyScaling !== 'object' || Array.isArray(legacyScaling))) {
    throw configError(source, 'rope_scaling', legacyScaling, 'null or an object');
  }
  let theta = positiveNumber(raw, source, 'rope_theta', 10_000);
  let scaling = legacyScaling === null ? null : scalingOf(legacyScaling as Raw, source, 'rope_scaling');
  const p = raw.rope_parameters ?? null;
  if (p !== null) {
    if (typeof p !== 'object' || Array.isArray(p) || !('rope_theta' in p || 'rope_type' in p)) {
      throw configError(source, 'rope_parameters', p, 'an object with rope_theta and rope_type (per-layer-type rotary parameters are not supported)');
    }
    const pTheta = positiveNumber(p as Raw, `${source} rope_parameters`, 'rope_theta', theta);
    const pScaling = scalingOf(p as Raw, source, 'rope_parameters');
    if (raw.rope_theta !== undefined && raw.rope_theta !== null && pTheta !== theta) {
      throw configError(source, 'rope_parameters.rope_theta', pTheta, `the top-level rope_theta ${theta}, or no top-level rope_theta`);
    }
    if (legacyScaling !== null && JSON.stringify(pScaling) !== JSON.stringify(scaling)) {
      throw configError(source, 'rope_parameters', p, `the same scaling as rope_scaling ${JSON.stringify(legacyScaling)}, or no rope_scaling`);
    }
    theta = pTheta;
    scaling = pScaling;
  }
  return scaling === null ? { rope_theta: theta } : { rope_theta: theta, rope_scaling: scaling };
}

/**
 * transformers 5's per-layer attention kinds. Gemma2 keeps them (its windows follow them; absent,
 * even layers slide); any other family must have full attention everywhere.
 */
function layerTypes(type: ModelType, raw: Raw, source: string): { layer_types?: ('sliding_attention' | 'full_attention')[] } {
  const v = raw.layer_types;
  if (v === undefined || v === null) return {};
  const n = raw.num_hidden_layers;
  const kinds = ['sliding_attention', 'full_attention'];
  if (!Array.isArray(v) || v.length !== n || !v.every((k) => kinds.includes(k as string))) {
    throw configError(source, 'layer_types', v, `a list of num_hidden_layers (${n}) entries, each "sliding_attention" or "full_attention"`);
  }
  if (type === 'gemma2') return { layer_types: v as ('sliding_attention' | 'full_attention')[] };
  if (v.includes('sliding_attention')) throw configError(source, 'layer_types', v, `"full_attention" for every layer (a ${type} model with sliding-window layers is not supported)`);
  return {};
}

/** Qwen's optional sliding window is off in every released Qwen2/2.5/3 config; on, we refuse. */
function noQwenWindow(raw: Raw, source: string): void {
  mustBe(raw, source, 'use_sliding_window', false, "Qwen's sliding-window attention is not supported");
}

/** The family's own fields of a config.json (hidden_act included), to spread over the common ones. */
export function familyFields(type: ModelType, raw: Raw, source: string): Partial<ModelConfig> {
  const ropeField = parseRope(raw, source);
  const layers = layerTypes(type, raw, source);
  switch (type) {
    case 'llama':
      mustBe(raw, source, 'hidden_act', 'silu', 'the Llama MLP uses SiLU');
      return {
        hidden_act: 'silu',
        attention_bias: bool(raw, source, 'attention_bias', false),
        mlp_bias: bool(raw, source, 'mlp_bias', false),
        ...headDimField(raw, source),
        ...ropeField,
      };
    case 'qwen2':
      mustBe(raw, source, 'hidden_act', 'silu', 'the Qwen2 MLP uses SiLU');
      noQwenWindow(raw, source);
      return { hidden_act: 'silu', ...headDimField(raw, source), ...ropeField };
    case 'qwen3':
      mustBe(raw, source, 'hidden_act', 'silu', 'the Qwen3 MLP uses SiLU');
      noQwenWindow(raw, source);
      return {
        hidden_act: 'silu',
        attention_bias: bool(raw, source, 'attention_bias', false),
        ...headDimField(raw, source, 128),
        ...ropeField,
      };
    case 'gemma2': {
      // Gemma2's MLP reads hidden_activation (hidden_act is a leftover of Gemma 1)
      mustBe(raw, source, 'hidden_activation', 'gelu_pytorch_tanh', 'the Gemma2 MLP uses GeGLU with tanh GELU');
      const hd = headDimField(raw, source, 256);
      return {
        hidden_act: 'gelu_pytorch_tanh',
        hidden_activation: 'gelu_pytorch_tanh',
        attention_bias: bool(raw, source, 'attention_bias', false),
        ...hd,
        query_pre_attn_scalar: positiveNumber(raw, source, 'query_pre_attn_scalar', 256),
        attn_logit_softcapping: capOrNull(raw, source, 'attn_logit_softcapping', 50),
        final_logit_softcapping: capOrNull(raw, source, 'final_logit_softcapping', 30),
        sliding_window: raw.sliding_window === null ? null : positiveInt(raw, source, 'sliding_window', 4096),
        ...layers,
        ...ropeField,
      };
    }
  }
}
