/**
 * The weight files of a checkpoint, as transformers lays them out:
 *
 *   model.safetensors                       all tensors, when they fit one shard
 *   model-00001-of-0000N.safetensors ...    shards, in table order, each at most maxShardBytes
 *   model.safetensors.index.json            {"metadata": {"total_size": bytes}, "weight_map": {name: file}}
 *
 * Tensors are float32 in memory; on disk F32 (our default, full precision for resuming), or F16 /
 * BF16 (rounded to nearest even) when a model is saved in the dtype it was published in. Reading
 * takes any mix and records the stored dtype, so a loaded checkpoint can be saved back as it came.
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { GrpoError } from '../shared/errors.js';
import { readSafetensorsFile, safetensorsChunks, type SafetensorsDtype } from './safetensors.js';
import type { NamedHostTensors } from './types.js';

/** Weight dtypes on disk, by their config.json `torch_dtype` names. */
export type WeightsDtype = 'float32' | 'float16' | 'bfloat16';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** Shard names transformers writes; a directory holding them is still "checkpoint files only". */
export const SHARD_FILE = /^model-\d{5}-of-\d{5}\.safetensors$/;
/** transformers' default max_shard_size ("5GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5e9;

const ST_DTYPE: Record<WeightsDtype, SafetensorsDtype> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const TORCH_DTYPE: Record<SafetensorsDtype, WeightsDtype> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const BYTES: Record<WeightsDtype, number> = { float32: 4, float16: 2, bfloat16: 2 };

export function isWeightsDtype(v: unknown): v is WeightsDtype {
  return typeof v === 'string' && v in ST_DTYPE;
}

/**
 * The files that hold `weights` in `dtype`: one model.safetensors, or shards of at most
 * `maxShardBytes` each (a single larger tensor gets a shard of its own) plus the index.
 */
export function weightFiles(
  weights: NamedHostTensors,
  dtype: WeightsDtype = 'float32',
  maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES,
): [string, Uint8Array[]][] {
  if (!isWeightsDtype(dtype)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_WRITE', `weights dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(ST_DTYPE).join(', ')}`);
  }
  if (!(maxShardBytes > 0)) throw new GrpoError('GRPO_ERR_CHECKPOINT_WRITE', `maxShardBytes is ${maxShardBytes}, it must be > 0`);
  const shards: NamedHostTensors[] = [];
  let current: NamedHostTensors = new Map();
  let bytes = 0;
  let total = 0;
  for (const [name, t] of weights) {
    const size = t.data.length * BYTES[dtype];
    if (current.size > 0 && bytes + size > maxShardBytes) {
      shards.push(current);
      current = new Map();
      bytes = 0;
    }
    current.set(name, t);
    bytes += size;
    total += size;
  }
  shards.push(current);
  const meta = { format: 'pt' }; // transformers refuses safetensors without format=pt
  if (shards.length === 1) return [[SINGLE_FILE, safetensorsChunks(shards[0], meta, ST_DTYPE[dtype])]];
  const n = shards.length;
  const pad = (i: number): string => String(i).padStart(5, '0');
  const files: [string, Uint8Array[]][] = [];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const file = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    files.push([file, safetensorsChunks(shard, meta, ST_DTYPE[dtype])]);
    for (const name of shard.keys()) weightMap[name] = file;
  });
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  files.push([INDEX_FILE, [Buffer.from(JSON.stringify(index, null, 2) + '\n', 'utf8')]]);
  return files;
}

/**
 * The weights of a one-file or sharded checkpoint directory, and the dtype they were stored in
 * (float32 when the files mix dtypes). Rotary inv_freq buffers some exporters save are dropped.
 * A shard the index names but the directory lacks is GRPO_ERR_CHECKPOINT_INCOMPLETE; a tensor
 * the index puts in a shard that does not hold it is GRPO_ERR_CHECKPOINT_MISMATCH.
 */
export async function readWeightFiles(dir: string, hasSingle: boolean): Promise<{ weights: NamedHostTensors; dtype: WeightsDtype }> {
  const weights: NamedHostTensors = new Map();
  const seen = new Set<SafetensorsDtype>();
  const add = (file: string, decoded: Awaited<ReturnType<typeof readSafetensorsFile>>): void => {
    for (const [name, t] of decoded.tensors) {
      // older transformers saved the rotary inverse frequencies as a buffer; they are not weights
      if (name.endsWith('.rotary_emb.inv_freq')) continue;
      if (weights.has(name)) throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `${file}: tensor ${name} appears in two weight files`);
      weights.set(name, t);
      seen.add(decoded.dtypes.get(name)!);
    }
  };
  if (hasSingle) {
    add(SINGLE_FILE, await readSafetensorsFile(join(dir, SINGLE_FILE)));
  } else {
    const weightMap = await readIndex(join(dir, INDEX_FILE));
    const files = [...new Set(Object.values(weightMap))];
    for (const file of files) {
      const path = join(dir, file);
      let decoded;
      try {
        decoded = await readSafetensorsFile(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new GrpoError('GRPO_ERR_CHECKPOINT_INCOMPLETE', `${INDEX_FILE} names ${file}, which is missing from ${dir}`, { cause: err });
        }
        throw err;
      }
      for (const [name, f] of Object.entries(weightMap)) {
        if (f === file && !decoded.tensors.has(name)) {
          throw new GrpoError('GRPO_ERR_CHECKPOINT_MISMATCH', `${INDEX_FILE} puts ${name} in ${file}, which does not hold it`);
        }
      }
      add(file, decoded);
    }
  }
  const dtype = seen.size === 1 ? TORCH_DTYPE[[...seen][0]] : 'float32';
  return { weights, dtype };
}

/** weight_map of an index, checked: an object of tensor name -> shard file name (no paths). */
async function readIndex(path: string): Promise<Record<string, string>> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new GrpoError(
      code === undefined ? 'GRPO_ERR_CHECKPOINT_CONFIG' : 'GRPO_ERR_CHECKPOINT_INCOMPLETE',
      `cannot read ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${path}: field weight_map is ${map === undefined ? 'missing' : JSON.stringify(map)}, expected an object`);
  }
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || basename(file) !== file || !file.endsWith('.safetensors')) {
      throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${path}: weight_map.${name} is ${JSON.stringify(file)}, expected a .safetensors file name in the same directory`);
    }
  }
  return map as Record<string, string>;
}
