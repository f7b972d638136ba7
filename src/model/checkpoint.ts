/**
 * Checkpoints: a directory that PyTorch `transformers` opens unchanged, plus what a run needs to
 * resume.
 *
 *   config.json              HF config of the model's family (llama, qwen2, qwen3, gemma2)
 *   model.safetensors        weights by HF name, metadata {"format": "pt"}: float32 unless saved
 *                            as float16/bfloat16; or shards model-0000i-of-0000N.safetensors and
 *                            model.safetensors.index.json (checkpoint-weights.ts)
 *   tokenizer.json           HF tokenizer (ours serialise to one too)
 *   tokenizer_config.json    names bos/eos/pad so AutoTokenizer gets them right
 *   optimizer.safetensors    optional: optimizer state tensors, for resuming
 *   trainer_state.json       optional: step, policy version, data cursor, RNG state, run config
 *   checkpoint_manifest.json written last: every file above with its size
 *
 * A LoRA checkpoint holds adapter_config.json and adapter_model.safetensors (PEFT's format, see
 * peft.ts) in place of model.safetensors; loading it loads the base checkpoint its adapter config
 * names and merges the adapters in, so every reader gets the weights the adapted model computes.
 *
 * Writes are atomic. Everything goes into `.NAME.tmp-PID-RAND` beside the target, each file and
 * the directory fsynced, the manifest last. An existing checkpoint is renamed aside to
 * `.NAME.old-PID-RAND`, the new one renamed into place, the parent fsynced, the old one deleted.
 * A crash therefore leaves at NAME either the old or the new complete checkpoint, or (between
 * the two renames) nothing, with both complete versions beside it: loading then takes the new
 * one, and the next save first moves it into place. A temp directory without its manifest is
 * never taken for a checkpoint. One writer per directory at a time (saves from this process are
 * queued).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { GrpoError, toGrpoError } from '../shared/errors.js';
import { writeFailure } from '../shared/write-error.js';
import { configJsonText, parseLlamaConfig, parseTrainerState, stopTokenIds, type TrainerState } from './checkpoint-config.js';
import { readWeightFiles, SHARD_FILE, weightFiles, type WeightsDtype } from './checkpoint-weights.js';
import { llamaParamShapes, validateLlamaWeights } from './llama-params.js';
import { checkAdapterTensors, loraTargets, mergeAdapters, shortName, type LoraSpec } from './lora.js';
import { parsePeftConfig, peftConfigJson, PEFT_FILES } from './peft.js';
import { readSafetensorsFile, safetensorsChunks } from './safetensors.js';
import { exists, fsyncDir, jsonBytes, readJson, statOrNull, writeSynced } from './checkpoint-io.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { loadTokenizer } from './tokenizer.js';
import type { LlamaConfig, NamedHostTensors, Tokenizer } from './types.js';

export { parseLlamaConfig, parseModelConfig, parseTrainerState, type TrainerState } from './checkpoint-config.js';
export type { WeightsDtype } from './checkpoint-weights.js';

export interface Checkpoint {
  config: LlamaConfig;
  weights: NamedHostTensors; // not written when `adapters` is given (LoRA)
  tokenizer: Tokenizer;
  optimizer?: NamedHostTensors;
  trainerState?: TrainerState;
  /** Set by loadCheckpoint: the dtype the weights were stored in (float32 when files mixed dtypes). */
  weightsDtype?: WeightsDtype;
  /**
   * LoRA: saved instead of the weights (which are then not written); on load, `weights` are the
   * base's with the adapters merged in, and this holds the base and adapters apart.
   */
  adapters?: CheckpointAdapters;
}

export interface CheckpointAdapters {
  spec: LoraSpec;
  basePath: string; // the base checkpoint directory (adapter_config.json's base_model_name_or_path)
  tensors: NamedHostTensors; // by PEFT name
  baseWeights?: NamedHostTensors; // set on load: the base without the adapters
}

export interface SaveOptions {
  /** Element type of the weights on disk: float32 (default, full precision) or the half types. */
  weightsDtype?: WeightsDtype;
  /** Largest weight file in bytes before the weights are sharded (default 5e9, as transformers). */
  maxShardBytes?: number;
}

export const CHECKPOINT_FILES = {
  config: 'config.json',
  model: 'model.safetensors',
  modelIndex: 'model.safetensors.index.json', // sharded HF checkpoints (read only)
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  optimizer: 'optimizer.safetensors',
  trainerState: 'trainer_state.json',
  manifest: 'checkpoint_manifest.json',
} as const;
const MANIFEST_FORMAT = 'grpo-cluster-checkpoint';
/** transformers' generation defaults; read for the end-of-turn ids chat models list only there. */
const GENERATION_CONFIG = 'generation_config.json';
/** Files a directory may hold for saveCheckpoint to replace it even if it is not complete. */
const REPLACEABLE = new Set<string>([...Object.values(CHECKPOINT_FILES), ...Object.values(PEFT_FILES), GENERATION_CONFIG, 'special_tokens_map.json']);

interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  files: Record<string, number>; // name -> size in bytes
}

const tempPrefix = (name: string): string => `.${name}.tmp-`;
const oldPrefix = (name: string): string => `.${name}.old-`;
const uniqueSuffix = (): string => `${process.pid}-${randomBytes(4).toString('hex')}`;
const saveQueues = new Map<string, Promise<void>>();

/**
 * Writes `ckpt` to `dir` atomically (see the file comment), replacing a checkpoint already there.
 * Weights go out as float32 unless `opts.weightsDtype` says otherwise (pass ckpt.weightsDtype to
 * keep a loaded model's own dtype); config.json's torch_dtype names what was written.
 */
export async function saveCheckpoint(dir: string, ckpt: Checkpoint, opts: SaveOptions = {}): Promise<void> {
  const target = resolve(dir);
  const previous = saveQueues.get(target) ?? Promise.resolve();
  // a failed earlier save already rejected to its own caller; it must not block this one
  const run = previous.catch(() => undefined).then(() => saveNow(target, ckpt, opts));
  saveQueues.set(target, run);
  try {
    await run;
  } catch (err) {
    throw writeFailure(target, err, 'checkpoint'); // I/O errors (EACCES, ENOSPC, ...) get the code and the path
  } finally {
    if (saveQueues.get(target) === run) saveQueues.delete(target);
  }
}

async function saveNow(target: string, ckpt: Checkpoint, opts: SaveOptions): Promise<void> {
  const config = parseLlamaConfig(ckpt.config, `config of ${target}`); // never write what we cannot load
  const dtype = opts.weightsDtype ?? 'float32';
  let weights: [string, Uint8Array[]][];
  if (ckpt.adapters) {
    const targets = loraTargets(llamaParamShapes(config), ckpt.adapters.spec);
    checkAdapterTensors(targets, ckpt.adapters.spec.r, ckpt.adapters.tensors);
    weights = adapterFiles(config, ckpt.adapters);
  } else {
    validateLlamaWeights(config, ckpt.weights);
    weights = weightFiles(ckpt.weights, dtype, opts.maxShardBytes); // checks dtype and shard size before any I/O
  }
  checkTokenizerFits(ckpt.tokenizer, config, target);
  if (ckpt.trainerState !== undefined) parseTrainerState(ckpt.trainerState);

  const parent = dirname(target);
  const name = basename(target);
  await mkdir(parent, { recursive: true });
  await recoverInterrupted(parent, name);
  await checkReplaceable(target);

  const tmp = join(parent, tempPrefix(name) + uniqueSuffix());
  await mkdir(tmp);
  try {
    const tokenizerJson = ckpt.tokenizer.toJSON();
    const files: [string, Uint8Array[]][] = [
      [CHECKPOINT_FILES.config, [Buffer.from(configJsonText({ ...config, torch_dtype: dtype }), 'utf8')]],
      ...weights,
      [CHECKPOINT_FILES.tokenizer, [jsonBytes(tokenizerJson)]],
      [CHECKPOINT_FILES.tokenizerConfig, [jsonBytes(tokenizerConfigFor(ckpt.tokenizer, tokenizerJson, config))]],
    ];
    if (ckpt.optimizer !== undefined) files.push([CHECKPOINT_FILES.optimizer, safetensorsChunks(ckpt.optimizer, { format: 'grpo-optimizer' })]);
    if (ckpt.trainerState !== undefined) files.push([CHECKPOINT_FILES.trainerState, [jsonBytes(ckpt.trainerState)]]);
    const manifest: Manifest = { format: MANIFEST_FORMAT, version: 1, files: {} };
    for (const [file, chunks] of files) manifest.files[file] = await writeSynced(join(tmp, file), chunks);
    await writeSynced(join(tmp, CHECKPOINT_FILES.manifest), [jsonBytes(manifest)]);
    await fsyncDir(tmp);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }

  // Commit. A failure from here on deletes nothing: a complete copy stays at `target` or beside
  // it, and the next save or load picks it up (see recoverInterrupted / interruptedSurvivor).
  try {
    const aside = (await statOrNull(target)) === null ? null : join(parent, oldPrefix(name) + uniqueSuffix());
    if (aside !== null) await rename(target, aside);
    await rename(tmp, target);
    await fsyncDir(parent);
    if (aside !== null) await rm(aside, { recursive: true, force: true });
  } catch (err) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_WRITE', `committing checkpoint ${target} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** A LoRA checkpoint's weight files: PEFT's adapter config and tensors (float32). */
function adapterFiles(config: LlamaConfig, a: CheckpointAdapters): [string, Uint8Array[]][] {
  const names = loraTargets(llamaParamShapes(config), a.spec).map((t) => shortName(t.module));
  return [
    [PEFT_FILES.config, [jsonBytes(peftConfigJson(a.spec, a.basePath, names))]],
    [PEFT_FILES.model, safetensorsChunks(a.tensors, { format: 'pt' })],
  ];
}

/**
 * Reads and validates a checkpoint: config fields (GRPO_ERR_CHECKPOINT_CONFIG), weight names and
 * shapes (GRPO_ERR_CHECKPOINT_MISMATCH naming the first mismatch), the tokenizer's vocabulary
 * against vocab_size. The optimizer state is read only with `withOptimizer` (and is undefined
 * when the checkpoint has none, e.g. one from Hugging Face). A missing directory throws
 * GRPO_ERR_CHECKPOINT_NOT_FOUND, a partial one GRPO_ERR_CHECKPOINT_INCOMPLETE.
 */
export async function loadCheckpoint(dir: string, opts: { withOptimizer?: boolean } = {}): Promise<Checkpoint> {
  try {
    return await loadNow(resolve(dir), opts.withOptimizer ?? false);
  } catch (err) {
    throw toGrpoError(err, 'GRPO_ERR_CHECKPOINT_READ'); // I/O errors (EACCES, EIO, ...) get a code
  }
}

async function loadNow(target: string, withOptimizer: boolean, depth = 0): Promise<Checkpoint> {
  const src = await locateCheckpoint(target);
  const config = parseLlamaConfig(await readJson(join(src, CHECKPOINT_FILES.config)), join(src, CHECKPOINT_FILES.config));
  let weights: NamedHostTensors;
  let dtype: WeightsDtype = 'float32';
  let adapters: CheckpointAdapters | undefined;
  if (await hasWeightFiles(src)) {
    ({ weights, dtype } = await readWeightFiles(src, await exists(join(src, CHECKPOINT_FILES.model))));
    validateLlamaWeights(config, weights);
    if (config.tie_word_embeddings) weights.delete('lm_head.weight'); // the model reuses embed_tokens
  } else {
    adapters = await readAdapters(src, config, depth);
    const targets = loraTargets(llamaParamShapes(config), adapters.spec);
    weights = mergeAdapters(adapters.baseWeights!, targets, adapters.spec.alpha / adapters.spec.r, adapters.tensors);
  }

  const genPath = join(src, GENERATION_CONFIG);
  const stopIds = stopTokenIds(config, (await exists(genPath)) ? await readJson(genPath) : null, genPath);
  // the whole set goes into config.json, so checkpoints saved from this one stop where it stops
  if (stopIds.length > 1) config.eos_token_id = stopIds;
  const tokenizer = await loadTokenizer(join(src, CHECKPOINT_FILES.tokenizer), {
    ids: { bosId: config.bos_token_id, eosId: stopIds[0] ?? null, padId: config.pad_token_id, stopIds },
  });
  checkTokenizerFits(tokenizer, config, src);

  const ckpt: Checkpoint = { config, weights, tokenizer, weightsDtype: dtype, ...(adapters ? { adapters } : {}) };
  if (withOptimizer && (await exists(join(src, CHECKPOINT_FILES.optimizer)))) {
    ckpt.optimizer = (await readSafetensorsFile(join(src, CHECKPOINT_FILES.optimizer))).tensors;
  }
  const statePath = join(src, CHECKPOINT_FILES.trainerState);
  if (await exists(statePath)) ckpt.trainerState = parseTrainerState(await readJson(statePath), statePath);
  return ckpt;
}

async function hasWeightFiles(dir: string): Promise<boolean> {
  return (await exists(join(dir, CHECKPOINT_FILES.model))) || (await exists(join(dir, CHECKPOINT_FILES.modelIndex)));
}

/** A LoRA checkpoint's adapters and the base they apply to (its config must be this one). */
async function readAdapters(src: string, config: LlamaConfig, depth: number): Promise<CheckpointAdapters> {
  const configPath = join(src, PEFT_FILES.config);
  const { spec, basePath } = parsePeftConfig(await readJson(configPath), configPath);
  if (depth > 0) throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${configPath}: its base ${basePath} is itself a LoRA checkpoint; merge it first (grpo export --merge)`);
  const tensors = (await readSafetensorsFile(join(src, PEFT_FILES.model))).tensors;
  checkAdapterTensors(loraTargets(llamaParamShapes(config), spec), spec.r, tensors);
  const baseDir = resolve(src, basePath);
  const base = await loadNow(baseDir, false, depth + 1);
  if (JSON.stringify(base.config) !== JSON.stringify(config)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `${src}: its config.json differs from the config of its base ${baseDir}; the adapters were trained on another model`);
  }
  return { spec, basePath, tensors, baseWeights: base.weights };
}

/**
 * True when loadCheckpoint(dir) finds a complete checkpoint: one whose manifest lists files that
 * are all present with their recorded sizes, or a foreign (e.g. Hugging Face) directory without a
 * manifest that has config.json, the weights and tokenizer.json. Our temp directories count only
 * with a verified manifest; a missing `dir` counts when an interrupted save left a complete one
 * beside it.
 */
export async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  try {
    await locateCheckpoint(resolve(dir));
    return true;
  } catch (err) {
    if (err instanceof GrpoError && (err.code === 'GRPO_ERR_CHECKPOINT_NOT_FOUND' || err.code === 'GRPO_ERR_CHECKPOINT_INCOMPLETE')) {
      return false;
    }
    throw err;
  }
}

/** The directory to read for `target`: itself, or the newest complete copy an interrupted save left. */
async function locateCheckpoint(target: string): Promise<string> {
  const s = await statOrNull(target);
  if (s !== null) {
    if (!s.isDirectory()) throw new GrpoError('GRPO_ERR_CHECKPOINT_NOT_FOUND', `${target} is a file, not a checkpoint directory`);
    const problem = await completenessProblem(target);
    if (problem !== null) throw new GrpoError('GRPO_ERR_CHECKPOINT_INCOMPLETE', `${target} is not a complete checkpoint: ${problem}`);
    return target;
  }
  const survivor = await interruptedSurvivor(dirname(target), basename(target));
  if (survivor === null) throw new GrpoError('GRPO_ERR_CHECKPOINT_NOT_FOUND', `no checkpoint at ${target}`);
  return survivor;
}

/** null when `dir` holds a complete checkpoint, else what is wrong with it. */
async function completenessProblem(dir: string): Promise<string | null> {
  const manifestPath = join(dir, CHECKPOINT_FILES.manifest);
  if (await exists(manifestPath)) {
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
    } catch {
      return `${CHECKPOINT_FILES.manifest} is unreadable`;
    }
    if (manifest?.format !== MANIFEST_FORMAT || typeof manifest.files !== 'object' || manifest.files === null) {
      return `${CHECKPOINT_FILES.manifest} is not a ${MANIFEST_FORMAT} manifest`;
    }
    for (const [file, size] of Object.entries(manifest.files)) {
      const fs = await statOrNull(join(dir, file));
      if (fs === null) return `${file} is missing`;
      if (fs.size !== size) return `${file} has ${fs.size} bytes, the manifest recorded ${size}`;
    }
    return null;
  }
  if (basename(dir).startsWith('.') && basename(dir).includes('.tmp-')) return `temp directory without ${CHECKPOINT_FILES.manifest}`;
  for (const file of [CHECKPOINT_FILES.config, CHECKPOINT_FILES.tokenizer]) {
    if (!(await exists(join(dir, file)))) return `${file} is missing`;
  }
  const adapterDir = (await exists(join(dir, PEFT_FILES.config))) && (await exists(join(dir, PEFT_FILES.model)));
  if (!adapterDir && !(await hasWeightFiles(dir))) return `${CHECKPOINT_FILES.model} is missing`;
  return null;
}

/** A complete sibling left by a save interrupted between its two renames: new (tmp) before old. */
async function interruptedSurvivor(parent: string, name: string): Promise<string | null> {
  const entries = (await statOrNull(parent)) === null ? [] : await readdir(parent);
  const candidates: { path: string; rank: number; mtime: number }[] = [];
  for (const entry of entries) {
    const rank = entry.startsWith(tempPrefix(name)) ? 0 : entry.startsWith(oldPrefix(name)) ? 1 : -1;
    if (rank < 0) continue;
    const path = join(parent, entry);
    const manifest = await statOrNull(join(path, CHECKPOINT_FILES.manifest));
    if (manifest !== null && (await completenessProblem(path)) === null) candidates.push({ path, rank, mtime: manifest.mtimeMs });
  }
  candidates.sort((a, b) => a.rank - b.rank || b.mtime - a.mtime);
  return candidates[0]?.path ?? null;
}

/** Before a save: put a survivor of an interrupted save back in place, then drop the leftovers. */
async function recoverInterrupted(parent: string, name: string): Promise<void> {
  const target = join(parent, name);
  if ((await statOrNull(target)) === null) {
    const survivor = await interruptedSurvivor(parent, name);
    if (survivor !== null) {
      await rename(survivor, target);
      await fsyncDir(parent);
    }
  }
  for (const entry of await readdir(parent)) {
    if (entry.startsWith(tempPrefix(name)) || entry.startsWith(oldPrefix(name))) {
      await rm(join(parent, entry), { recursive: true, force: true });
    }
  }
}

/** Refuses to replace a directory that holds anything but checkpoint files (e.g. a mistyped --out). */
async function checkReplaceable(target: string): Promise<void> {
  const s = await statOrNull(target);
  if (s === null) return;
  if (!s.isDirectory()) throw new GrpoError('GRPO_ERR_CHECKPOINT_EXISTS', `${target} is a file; choose another checkpoint path`);
  const foreign = (await readdir(target)).filter((f) => !REPLACEABLE.has(f) && !SHARD_FILE.test(f));
  if (foreign.length > 0 && (await completenessProblem(target)) !== null) {
    throw new GrpoError(
      'GRPO_ERR_CHECKPOINT_EXISTS',
      `refusing to replace ${target}: it is not a checkpoint and holds ${foreign.slice(0, 3).join(', ')}; choose an empty or new directory`,
    );
  }
}

function checkTokenizerFits(tokenizer: Tokenizer, config: LlamaConfig, where: string): void {
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new GrpoError(
      'GRPO_ERR_CHECKPOINT_MISMATCH',
      `${where}: the tokenizer has ${tokenizer.vocabSize} tokens but config vocab_size is ${config.vocab_size}; ` +
        'the model cannot embed every token',
    );
  }
}

/** tokenizer_config.json naming the special tokens, so `AutoTokenizer` resolves them as we do. */
function tokenizerConfigFor(tokenizer: Tokenizer, json: unknown, config: LlamaConfig): Record<string, unknown> {
  const text = (id: number | null): string | null => (id === null ? null : tokenTextById(json, id));
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: text(tokenizer.bosId),
    eos_token: text(tokenizer.eosId),
    pad_token: text(tokenizer.padId),
    clean_up_tokenization_spaces: false,
    model_max_length: config.max_position_embeddings,
    // a pretrained model's chat template stays with its fine-tuned checkpoints (prompts must be wrapped alike)
    ...(tokenizer instanceof HfTokenizer && tokenizer.tokenizerConfig.chat_template !== undefined
      ? { chat_template: tokenizer.tokenizerConfig.chat_template }
      : {}),
  };
}

function tokenTextById(json: unknown, id: number): string | null {
  const j = json as { added_tokens?: { id?: unknown; content?: unknown }[]; model?: { vocab?: unknown } };
  const added = Array.isArray(j?.added_tokens) ? j.added_tokens.find((t) => t?.id === id) : undefined;
  if (typeof added?.content === 'string') return added.content;
  const vocab = j?.model?.vocab;
  if (vocab !== null && typeof vocab === 'object' && !Array.isArray(vocab)) {
    for (const [token, v] of Object.entries(vocab)) if (v === id) return token;
  }
  return null;
}
