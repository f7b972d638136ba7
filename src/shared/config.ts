/**
 * The one configuration schema shared by every role (coordinator, learner, worker, train, sft).
 * Keys are snake_case and reuse the names GRPO users know from the seed documents
 * (`group_size`, `kl_coef`, `clip_ratio`, `max_gen_len`, ...). A config comes from DEFAULTS,
 * then a YAML/JSON file, then command-line flags (each key is also a `--kebab-case` flag),
 * then GRPO_TOKEN for the token. It is validated once (unknown keys rejected with their path),
 * frozen, logged at start and saved in every checkpoint. docs/config.md lists every key.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GrpoError } from './errors.js';
import { roleToken } from './credentials.js';
import type { Role } from './protocol.js';

const int = () => z.number().int();
const posInt = () => z.number().int().positive();
const nonNeg = () => z.number().nonnegative();

/**
 * `curriculum`: difficulty levels as task_options overrides, easiest first; the learner moves to
 * the next level when the rolling success rate (task.isCorrect over the last `window` completions
 * sampled at the current level) reaches `threshold`. See src/learner/curriculum.ts.
 */
export const CurriculumSchema = z.strictObject({
  levels: z.array(z.record(z.string(), z.unknown())).min(2), // e.g. [{ max_digits: 1 }, { max_digits: 2 }]
  threshold: z.number().gt(0).max(1).default(0.8), // rolling success rate that raises the level
  window: posInt().default(256), // completions in the rolling rate; a level is left only with a full window
});

export const ConfigSchema = z.strictObject({
  // --- run ---
  backend: z.enum(['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu']).default('auto'), // tensor engine (see README)
  device: int().nonnegative().nullable().default(null), // the Nth GPU in PCI order (device-select layer), else the WebGPU adapter index; as `grpo doctor` lists them; null = the first GPU
  seed: int().default(1234), // seeds data, init and sampling
  deterministic: z.boolean().default(false), // group seeds from seed/step/prompt, on-policy steps in prompt order: identical losses on resume and with any worker count
  out: z.string().default('runs/grpo'), // output directory: checkpoints, logs, summary.json
  // --- task ---
  task: z.string().default('arithmetic'), // built-in task name, or path to a JS/TS module exporting a task
  task_options: z.record(z.string(), z.unknown()).default({}), // task knobs, e.g. { max_digits: 2, max_depth: 2 }
  reward_weights: z.record(z.string(), z.number()).default({}), // per reward function name; missing = task default
  reward_module: z.string().min(1).nullable().default(null), // path of a JS/TS module whose reward functions join the task's
  curriculum: CurriculumSchema.nullable().default(null), // null = fixed difficulty (task_options)
  // --- data files and prompts (pretrained models; see src/tasks/dataset/) ---
  dataset: z.string().min(1).nullable().default(null), // JSONL/JSON/CSV/Parquet of prompts; null = the task generates them. Without `task` it means task math-answer
  test_dataset: z.string().min(1).nullable().default(null), // held-out file; null = split `dataset` by test_fraction
  test_fraction: z.number().gt(0).lt(1).default(0.1), // share of `dataset`'s prompt texts held out when there is no test_dataset
  prompt_field: z.string().min(1).nullable().default(null), // dotted path; null = first of prompt, question, problem, messages, input
  answer_field: z.string().min(1).nullable().default(null), // dotted path; null = first of answer, solution, ground_truth, target
  completion_field: z.string().min(1).nullable().default(null), // dotted path of SFT targets; null = completion, response, or a final assistant message
  apply_chat_template: z.boolean().default(true), // wrap prompts in the checkpoint's chat_template (tokenizer_config.json) when it has one
  system_prompt: z.string().nullable().default(null), // a system message before each prompt; null = none
  // --- model ---
  model_size: z.enum(['tiny', 'small', 'medium', 'base']).default('tiny'), // preset for SFT from scratch
  model: z.string().min(1).nullable().default(null), // a pretrained (Hugging Face) checkpoint directory: train and eval start from it as from checkpoint, sft fine-tunes it
  checkpoint: z.string().nullable().default(null), // start policy; null in `train` = SFT warm start first
  // --- LoRA (src/model/lora.ts): 0 = every weight is trained ---
  lora_r: int().nonnegative().default(0), // adapter rank; 0 = off (full fine-tuning)
  lora_alpha: z.number().positive().default(16), // the update is (lora_alpha / lora_r) B A
  lora_dropout: z.number().min(0).lt(1).default(0), // PEFT's lora_dropout: inverted dropout on the adapter path's input in training forwards
  lora_sampling: z.enum(['merged', 'side']).default('merged'), // workers: adapters folded into the weights (faster, BENCHMARKS.md) or beside them
  lora_target_modules: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default(['q_proj', 'k_proj', 'v_proj', 'o_proj']), // PEFT names, or all-linear
  // --- SFT warm start ---
  sft_steps: posInt().default(1000), // 20-40 s here; held-out arithmetic accuracy ~30% (useful, far from perfect)
  sft_batch_size: posInt().default(64),
  sft_lr: z.number().positive().default(3e-3),
  // --- sampling (rollout workers) ---
  group_size: posInt().min(2).default(4), // completions per prompt (num_completions_per_prompt)
  temperature: nonNeg().default(1.0), // 0 = greedy (useless for GRPO, allowed for debugging)
  top_k: int().nonnegative().default(0), // 0 = off
  top_p: z.number().gt(0).max(1).default(1.0), // 1 = off
  max_gen_len: posInt().default(16), // max completion tokens
  // --- objective (see docs/objective.md) ---
  kl_coef: nonNeg().default(0), // beta; 0 = no reference model is loaded at all
  clip_ratio: nonNeg().default(0.2), // epsilon_low
  clip_ratio_high: nonNeg().nullable().default(null), // epsilon_high; null = clip_ratio (DAPO clip-higher when larger)
  loss_type: z.enum(['grpo', 'bnpo', 'dr_grpo', 'dapo']).default('dapo'),
  importance_level: z.enum(['token', 'sequence']).default('token'), // sequence = GSPO
  scale_rewards: z.enum(['group', 'batch', 'none']).default('group'),
  entropy_coef: nonNeg().default(0),
  mask_truncated: z.boolean().default(false), // completions cut at max_gen_len get no gradient
  dynamic_sampling: z.boolean().default(true), // drop groups whose rewards are all equal (DAPO)
  overlong_cache_len: int().nonnegative().default(0), // DAPO overlong shaping window; 0 = off
  // --- learner ---
  steps: posInt().default(3000), // GRPO optimizer steps
  prompts_per_step: posInt().default(256), // groups per step (batch_size in the seeds)
  num_iterations: posInt().default(1), // inner epochs over each batch (PPO-style reuse)
  micro_batch_size: posInt().default(256), // completions per forward/backward; gradients accumulate
  gradient_checkpointing: z.boolean().default(false), // recompute each decoder layer in backward: less memory, ~1 more forward
  lr: z.number().positive().default(1e-3),
  lr_schedule: z.enum(['cosine', 'constant']).default('cosine'),
  warmup_steps: int().nonnegative().default(20),
  min_lr_ratio: z.number().min(0).max(1).default(0.1), // cosine floor as a fraction of lr
  weight_decay: nonNeg().default(0),
  adam_beta1: z.number().min(0).lt(1).default(0.9),
  adam_beta2: z.number().min(0).lt(1).default(0.99),
  adam_eps: z.number().positive().default(1e-8),
  grad_clip: nonNeg().default(1.0), // max global gradient norm; 0 = off
  max_staleness: int().nonnegative().default(1), // admit groups sampled at most this many versions ago
  max_failed_groups_in_row: int().nonnegative().default(64), // the learner stops with GRPO_ERR_GROUPS_FAILING after this many failed groups in a row; 0 = never
  save_interval: int().nonnegative().default(250), // steps between checkpoints; 0 = only at the end
  eval_interval: int().nonnegative().default(250), // steps between held-out evals; 0 = only at the end
  eval_samples: posInt().default(500), // held-out problems per eval
  eval_k: posInt().default(1), // samples per problem for pass@k (1 = greedy accuracy only)
  log_csv: z.string().nullable().default(null), // per-step metrics CSV path (JSONL is always written)
  log_completions_steps: int().nonnegative().default(0), // steps between sample-completion logs (completions.jsonl); 0 = off
  replay_buffer_size: int().nonnegative().default(256), // high-variance groups kept to replace zero-variance ones; 0 = off
  replay_max_age: posInt().default(4), // policy versions a stored group may lag before it is dropped
  // --- distributed ---
  coordinator: z.string().nullable().default(null), // ws://host:port of the coordinator (learner, worker)
  host: z.string().default('127.0.0.1'), // coordinator bind address; loopback unless told otherwise
  port: int().min(0).max(65535).default(7070), // coordinator port; 0 = any free port
  token: z.string().nullable().default(null), // shared secret; env GRPO_TOKEN when unset
  workers: int().nonnegative().default(2), // local rollout workers started by `grpo train`
  worker_capacity: posInt().default(64), // groups a worker samples at once
  lease_ms: posInt().default(60_000), // 60 s: a lease not finished or heartbeated by then is re-dispatched
  heartbeat_ms: posInt().default(2_000), // 2 s
  max_payload_bytes: posInt().default(64 * 1024 * 1024), // 64 MiB per WebSocket message
  weights_encoding: z.enum(['f32', 'f16', 'bf16']).default('f32'), // weights on the wire
  reference_dtype: z.enum(['float32', 'bfloat16', 'float16']).default('float32'), // storage of the frozen KL reference: 16-bit halves its bytes
  weights_chunk_bytes: posInt().default(1024 * 1024), // 1 MiB chunks
  reward_timeout_ms: posInt().default(10_000), // 10 s per reward call
  reward_retries: int().nonnegative().default(2), // a failing group is retried this often, then skipped
  reward_threads: posInt().default(1), // piscina threads per worker for reward functions
  remote_reward_url: z.string().regex(/^https?:\/\/\S+$/, 'must be an http:// or https:// URL').nullable().default(null), // a judge served elsewhere; null = none
  remote_reward_name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 letters, digits, _ . - starting with a letter or _').default('remote'),
  remote_reward_weight: z.number().default(1), // default weight; reward_weights may override it by name
  remote_reward_timeout_ms: posInt().default(30_000), // 30 s per request
  remote_reward_retries: int().nonnegative().default(3), // retries of a failed request, with backoff
  remote_reward_backoff_ms: int().nonnegative().default(500), // 0.5 s before the first retry, doubling, with jitter
  remote_reward_max_in_flight: posInt().default(4), // requests in flight at once per worker
  metrics_port: int().min(0).max(65535).default(0), // learner/worker /metrics port; 0 = off
  allowed_modules: z.union([z.string(), z.array(z.string().min(1))]).default([]), // worker: task/reward module files or folders a RunSpec may make it import (a list, or comma-separated); built-in tasks need none
  allowed_reward_urls: z.union([z.string(), z.array(z.string().min(1))]).default([]), // worker: URL prefixes of remote rewards it may call with GRPO_REMOTE_REWARD_TOKEN (besides env GRPO_REMOTE_REWARD_URL)
  metrics_host: z.string().min(1).default('0.0.0.0'), // learner/worker /metrics bind address (Prometheus scrapes from elsewhere)
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;
export type ConfigKey = keyof Config;
export type RawConfig = Partial<Record<ConfigKey, unknown>>;

export const CONFIG_KEYS = Object.keys(ConfigSchema.shape) as ConfigKey[];

/** Validates a raw object once; unknown keys and bad values fail with their path. */
export function parseConfig(raw: unknown, source = 'config'): Config {
  const r = ConfigSchema.safeParse(withImpliedKeys(raw ?? {}));
  if (!r.success) {
    const issue = r.error.issues[0];
    const path =
      issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k].join('.')).join(', ') : issue.path.join('.') || '(root)';
    const what = issue.code === 'unrecognized_keys' ? `unknown key(s) ${path}` : `${path}: ${issue.message}`;
    throw new GrpoError('GRPO_ERR_CONFIG', `${source}: ${what}; see docs/config.md for the keys`);
  }
  return Object.freeze(r.data);
}

/** A `dataset` without a `task` is read by the built-in task for files of problems, math-answer. */
function withImpliedKeys(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  if (r.dataset !== undefined && r.dataset !== null && r.task === undefined) return { ...r, task: 'math-answer' };
  return raw;
}

/** Reads a YAML or JSON config file (JSON is YAML) into a raw object. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new GrpoError('GRPO_ERR_CONFIG', `cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_CONFIG', `config file ${path} is not valid YAML/JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new GrpoError('GRPO_ERR_CONFIG', `config file ${path} must hold a mapping of keys to values`);
  }
  return value as Record<string, unknown>;
}

/**
 * DEFAULTS < file < flags < GRPO_<ROLE>_TOKEN or GRPO_TOKEN (for `token` only when unset; the role's
 * own variable first when `role` is given, see credentials.ts). `flags` holds only the
 * keys the user actually gave.
 */
export function resolveConfig(opts: { file?: string; flags?: RawConfig; env?: NodeJS.ProcessEnv; role?: Role }): Config {
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  parseConfig(fromFile, opts.file); // report file problems against the file's name
  const merged: Record<string, unknown> = { ...fromFile, ...(opts.flags ?? {}) };
  const env = opts.env ?? process.env;
  const envToken = opts.role === undefined ? env.GRPO_TOKEN || null : roleToken(opts.role, env);
  if ((merged.token === undefined || merged.token === null) && envToken) merged.token = envToken;
  return parseConfig(merged, opts.file ? `${opts.file} + flags` : 'flags');
}

export const DEFAULT_CONFIG: Config = parseConfig({});

/** The config as saved and logged: the shared token is a secret and never written anywhere. */
export function publicConfig(config: Config): Config {
  return { ...config, token: null };
}
