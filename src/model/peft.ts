/**
 * LoRA adapters on disk in PEFT's format, so `peft.PeftModel.from_pretrained(base, dir)` loads
 * what we train and we load adapters PEFT wrote:
 *
 *   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout",
 *                               "target_modules", "base_model_name_or_path", ...}
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight
 *                               [out, r], float32
 *
 * A LoRA checkpoint written by the learner is such a directory plus config.json, the tokenizer,
 * and for resuming optimizer.safetensors and trainer_state.json; the base weights are not copied:
 * `base_model_name_or_path` names the base checkpoint directory (absolute, or relative to the
 * adapter directory), and loadCheckpoint merges the adapters into it (checkpoint.ts).
 */
import { GrpoError } from '../shared/errors.js';
import type { LoraSpec } from './lora.js';

export const PEFT_FILES = {
  config: 'adapter_config.json',
  model: 'adapter_model.safetensors',
} as const;

/** What adapter_config.json says about the adapters and their base. */
export interface PeftAdapterConfig {
  spec: LoraSpec;
  basePath: string; // base_model_name_or_path
}

/** adapter_config.json as PEFT writes it for a LoRA on a causal LM (fields PEFT reads on load). */
export function peftConfigJson(spec: LoraSpec, basePath: string, targetNames: string[]): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: basePath,
    r: spec.r,
    lora_alpha: spec.alpha,
    lora_dropout: spec.dropout,
    // PEFT stores a set; the short names of the adapted layers, sorted for stable files
    target_modules: spec.targetModules === 'all-linear' ? [...new Set(targetNames)].sort() : [...spec.targetModules].sort(),
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/**
 * Reads adapter_config.json. Refuses (GRPO_ERR_CHECKPOINT_CONFIG) what this trainer does not
 * compute: another peft_type, rsLoRA or DoRA scaling, bias adapters, transposed (Conv1D) weights,
 * per-layer ranks, modules_to_save.
 */
export function parsePeftConfig(raw: unknown, source: string): PeftAdapterConfig {
  const bad = (what: string): GrpoError => new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${source}: ${what}`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('not a JSON object');
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== 'LORA') throw bad(`peft_type is ${JSON.stringify(c.peft_type)}; only LORA adapters are supported`);
  if (!Number.isInteger(c.r) || (c.r as number) < 1) throw bad(`r is ${JSON.stringify(c.r)}, expected an integer >= 1`);
  if (typeof c.lora_alpha !== 'number' || !(c.lora_alpha > 0)) throw bad(`lora_alpha is ${JSON.stringify(c.lora_alpha)}, expected a number > 0`);
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw bad(`lora_dropout is ${JSON.stringify(dropout)}, expected 0 <= p < 1`);
  if (typeof c.base_model_name_or_path !== 'string' || c.base_model_name_or_path === '') throw bad('base_model_name_or_path is missing');
  for (const [key, ok] of [
    ['use_rslora', (v: unknown) => v === undefined || v === false],
    ['use_dora', (v: unknown) => v === undefined || v === false],
    ['bias', (v: unknown) => v === undefined || v === 'none'],
    ['fan_in_fan_out', (v: unknown) => v === undefined || v === false],
    ['modules_to_save', (v: unknown) => v === undefined || v === null || (Array.isArray(v) && v.length === 0)],
    ['rank_pattern', (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0)],
    ['alpha_pattern', (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0)],
  ] as const) {
    if (!ok(c[key])) throw bad(`${key} is ${JSON.stringify(c[key])}; this trainer supports plain LoRA (no rsLoRA, DoRA, bias, fan_in_fan_out, modules_to_save or per-layer patterns)`);
  }
  const targets = c.target_modules;
  let targetModules: LoraSpec['targetModules'];
  if (targets === 'all-linear') targetModules = 'all-linear';
  else if (Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string' && t !== '')) targetModules = targets as string[];
  else throw bad(`target_modules is ${JSON.stringify(targets)}, expected a list of module names or "all-linear"`);
  return { spec: { r: c.r as number, alpha: c.lora_alpha, dropout, targetModules }, basePath: c.base_model_name_or_path };
}

/** The LoRA spec a run's config asks for, or null when lora_r is 0. */
export function loraSpecOf(c: { lora_r: number; lora_alpha: number; lora_dropout: number; lora_target_modules: string[] | 'all-linear' }): LoraSpec | null {
  if (c.lora_r === 0) return null;
  return { r: c.lora_r, alpha: c.lora_alpha, dropout: c.lora_dropout, targetModules: c.lora_target_modules };
}
