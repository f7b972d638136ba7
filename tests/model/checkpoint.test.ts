import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Rng } from '../../src/shared/rng.js';
import {
  isCompleteCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
  type Checkpoint,
  type TrainerState,
} from '../../src/model/checkpoint.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { decodeSafetensors, encodeSafetensors } from '../../src/model/safetensors.js';
import { CharTokenizer } from '../../src/model/tokenizer.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { expectCode } from '../helpers.js';

const ALPHABET = '0123456789+-='; // 13 characters + 3 specials = vocab 16

function tinyConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: 16,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    max_position_embeddings: 32,
    rms_norm_eps: 1e-6,
    rope_theta: 10_000,
    tie_word_embeddings: false,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: 'float32',
    initializer_range: 0.02,
    ...over,
  };
}

function randomTensors(shapes: Map<string, number[]>, seed: number): NamedHostTensors {
  const rng = new Rng(seed);
  const out: NamedHostTensors = new Map();
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    out.set(name, { shape, data });
  }
  return out;
}

function makeCheckpoint(seed: number, over: Partial<LlamaConfig> = {}): Checkpoint {
  const config = tinyConfig(over);
  return { config, weights: randomTensors(llamaParamShapes(config), seed), tokenizer: CharTokenizer.fromAlphabet(ALPHABET) };
}

function expectSameTensors(a: NamedHostTensors, b: NamedHostTensors): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [name, t] of a) {
    expect(b.get(name)!.shape, name).toEqual(t.shape);
    expect(Buffer.from(b.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
  }
}

/** Rewrites one file of a saved checkpoint and updates its manifest, as a hand edit would need. */
async function tamper(dir: string, file: string, edit: (bytes: Buffer) => Uint8Array | string): Promise<void> {
  const next = edit(await readFile(join(dir, file)));
  await writeFile(join(dir, file), next);
  const manifestPath = join(dir, 'checkpoint_manifest.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  manifest.files[file] = (await stat(join(dir, file))).size;
  await writeFile(manifestPath, JSON.stringify(manifest));
}
const editJson = (f: (j: Record<string, unknown>) => void) => (b: Buffer) => {
  const j = JSON.parse(b.toString('utf8'));
  f(j);
  return JSON.stringify(j);
};

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ckpt-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('saveCheckpoint / loadCheckpoint', () => {
  it('round-trips config, weights and tokenizer in the Hugging Face layout', async () => {
    const ckpt = makeCheckpoint(1);
    const dir = join(root, 'nested', 'ckpt');
    await saveCheckpoint(dir, ckpt);
    expect((await readdir(dir)).sort()).toEqual(
      ['checkpoint_manifest.json', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].sort(),
    );
    const back = await loadCheckpoint(dir);
    expect(back.config).toEqual(ckpt.config);
    expectSameTensors(ckpt.weights, back.weights);
    expect(back.tokenizer).toBeInstanceOf(CharTokenizer);
    expect(back.tokenizer.encode('12+3=15')).toEqual(ckpt.tokenizer.encode('12+3=15'));
    expect(back.optimizer).toBeUndefined();
    expect(back.trainerState).toBeUndefined();

    const { metadata } = decodeSafetensors(await readFile(join(dir, 'model.safetensors')));
    expect(metadata).toEqual({ format: 'pt' }); // transformers refuses files without it
    const tokCfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(tokCfg).toMatchObject({ bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>' });
  });

  it('round-trips the optimizer state and trainer state for resuming', async () => {
    const ckpt = makeCheckpoint(2);
    const optimizer = randomTensors(new Map([['adam.m.model.norm.weight', [8]], ['adam.v.model.norm.weight', [8]], ['adam.t', []]]), 3);
    const rng = new Rng(7);
    rng.next();
    const trainerState: TrainerState = {
      step: 120,
      policyVersion: 12,
      dataCursor: { epoch: 1, index: 4096 },
      rng: rng.getState(),
      config: { lr: 1e-4, batch: 32 },
      bestReward: 0.5,
    };
    const dir = join(root, 'resume');
    await saveCheckpoint(dir, { ...ckpt, optimizer, trainerState });
    const withOpt = await loadCheckpoint(dir, { withOptimizer: true });
    expectSameTensors(optimizer, withOpt.optimizer!);
    expect(withOpt.trainerState).toEqual(trainerState);
    const restored = new Rng(0);
    restored.setState(withOpt.trainerState!.rng as [number, number, number, number]);
    expect(restored.nextU32()).toBe(rng.nextU32());
    const withoutOpt = await loadCheckpoint(dir);
    expect(withoutOpt.optimizer).toBeUndefined();
    expect(withoutOpt.trainerState!.step).toBe(120);
  });

  it('replaces an existing checkpoint and leaves nothing else in the parent', async () => {
    const dir = join(root, 'ckpt');
    await saveCheckpoint(dir, makeCheckpoint(1));
    const second = makeCheckpoint(2);
    await saveCheckpoint(dir, second);
    expectSameTensors(second.weights, (await loadCheckpoint(dir)).weights);
    expect(await readdir(root)).toEqual(['ckpt']);
  });

  it('queues concurrent saves to the same directory so the last one wins', async () => {
    const dir = join(root, 'ckpt');
    const ckpts = [1, 2, 3].map((s) => makeCheckpoint(s));
    await Promise.all(ckpts.map((c) => saveCheckpoint(dir, c)));
    expectSameTensors(ckpts[2].weights, (await loadCheckpoint(dir)).weights);
    expect(await readdir(root)).toEqual(['ckpt']);
  });

  it('accepts a tied checkpoint that also carries lm_head.weight, and drops the copy', async () => {
    const config = tinyConfig({ tie_word_embeddings: true });
    const weights = randomTensors(llamaParamShapes(config), 4);
    weights.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
    const dir = join(root, 'tied');
    await saveCheckpoint(dir, { config, weights, tokenizer: CharTokenizer.fromAlphabet(ALPHABET) });
    const back = await loadCheckpoint(dir);
    expect(back.config.tie_word_embeddings).toBe(true);
    expect(back.weights.has('lm_head.weight')).toBe(false);
    expect(back.weights.size).toBe(llamaParamShapes(config).size);
  });

  it('refuses to save what it could not load, writing nothing', async () => {
    const dir = join(root, 'bad');
    const ckpt = makeCheckpoint(1);
    ckpt.weights.delete('model.layers.0.mlp.up_proj.weight');
    await expectCode(saveCheckpoint(dir, ckpt), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'model.layers.0.mlp.up_proj.weight');
    const bigVocab = { ...makeCheckpoint(1), tokenizer: CharTokenizer.fromAlphabet(ALPHABET + 'abc') };
    await expectCode(saveCheckpoint(dir, bigVocab), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'vocab_size is 16');
    const badState = { ...makeCheckpoint(1), trainerState: { step: -1 } as unknown as TrainerState };
    await expectCode(saveCheckpoint(dir, badState), 'GRPO_ERR_CHECKPOINT_TRAINER_STATE', 'step');
    await expectCode(saveCheckpoint(dir, makeCheckpoint(1, { num_key_value_heads: 3 })), 'GRPO_ERR_CHECKPOINT_CONFIG', 'num_key_value_heads');
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses to replace a directory that is not a checkpoint', async () => {
    const dir = join(root, 'home');
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'precious');
    await expectCode(saveCheckpoint(dir, makeCheckpoint(1)), 'GRPO_ERR_CHECKPOINT_EXISTS', 'notes.txt');
    expect(await readFile(join(dir, 'notes.txt'), 'utf8')).toBe('precious');
    const empty = join(root, 'empty');
    await mkdir(empty);
    await saveCheckpoint(empty, makeCheckpoint(1));
    expect(await isCompleteCheckpoint(empty)).toBe(true);
  });
});

describe('crash safety', () => {
  /** A saved checkpoint copied to `path`, as a save interrupted at some point would leave it. */
  async function savedCopy(path: string, seed: number, opts: { withoutManifest?: boolean } = {}): Promise<Checkpoint> {
    const ckpt = makeCheckpoint(seed);
    const scratch = join(root, `scratch-${seed}`);
    await saveCheckpoint(scratch, ckpt);
    await rename(scratch, path);
    if (opts.withoutManifest) await rm(join(path, 'checkpoint_manifest.json'));
    return ckpt;
  }

  it('never takes a leftover temp directory for a checkpoint', async () => {
    const tmp = join(root, '.ckpt.tmp-123-abcd');
    await savedCopy(tmp, 1, { withoutManifest: true }); // every file but the manifest: crashed just before it
    expect(await isCompleteCheckpoint(tmp)).toBe(false);
    expect(await isCompleteCheckpoint(join(root, 'ckpt'))).toBe(false);
    await expectCode(loadCheckpoint(join(root, 'ckpt')), 'GRPO_ERR_CHECKPOINT_NOT_FOUND');
  });

  it('reports a directory with a missing or truncated file as incomplete', async () => {
    const dir = join(root, 'ckpt');
    await saveCheckpoint(dir, { ...makeCheckpoint(1), trainerState: { step: 1, policyVersion: 1, dataCursor: 0, rng: null, config: {} } });
    await rm(join(dir, 'trainer_state.json'));
    expect(await isCompleteCheckpoint(dir)).toBe(false);
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_INCOMPLETE', 'trainer_state.json is missing');

    const dir2 = join(root, 'ckpt2');
    await saveCheckpoint(dir2, makeCheckpoint(2));
    await truncate(join(dir2, 'model.safetensors'), 100);
    await expectCode(loadCheckpoint(dir2), 'GRPO_ERR_CHECKPOINT_INCOMPLETE', 'model.safetensors has 100 bytes');
  });

  it('keeps the old checkpoint when a save dies before its renames', async () => {
    const dir = join(root, 'ckpt');
    const old = makeCheckpoint(1);
    await saveCheckpoint(dir, old);
    await savedCopy(join(root, '.ckpt.tmp-999-0001'), 2, { withoutManifest: true });
    expectSameTensors(old.weights, (await loadCheckpoint(dir)).weights);
    const next = makeCheckpoint(3);
    await saveCheckpoint(dir, next); // cleans the leftover
    expect(await readdir(root)).toEqual(['ckpt']);
    expectSameTensors(next.weights, (await loadCheckpoint(dir)).weights);
  });

  it('between the two renames, loads the new complete version, else the old one', async () => {
    const dir = join(root, 'ckpt');
    const old = await savedCopy(join(root, '.ckpt.old-999-0002'), 1);
    const fresh = await savedCopy(join(root, '.ckpt.tmp-999-0003'), 2);
    expect(await isCompleteCheckpoint(dir)).toBe(true);
    expectSameTensors(fresh.weights, (await loadCheckpoint(dir)).weights);

    await rm(join(root, '.ckpt.tmp-999-0003', 'checkpoint_manifest.json')); // new one not finished
    expectSameTensors(old.weights, (await loadCheckpoint(dir)).weights);
  });

  it('the next save puts the survivor in place first, so a failure during it still leaves a checkpoint', async () => {
    const dir = join(root, 'ckpt');
    const old = await savedCopy(join(root, '.ckpt.old-999-0004'), 1);
    // the optimizer tensor is malformed, so this save fails while writing, after its recovery step
    const failing = { ...makeCheckpoint(5), optimizer: new Map([['m', { shape: [4], data: new Float32Array(3) }]]) };
    await expectCode(saveCheckpoint(dir, failing), 'GRPO_ERR_BAD_SAFETENSORS');
    expect(await readdir(root)).toEqual(['ckpt']);
    expectSameTensors(old.weights, (await loadCheckpoint(dir)).weights);
    const next = makeCheckpoint(6);
    await saveCheckpoint(dir, next);
    expect(await readdir(root)).toEqual(['ckpt']);
    expectSameTensors(next.weights, (await loadCheckpoint(dir)).weights);
  });
});

describe('validation on load', () => {
  it('throws GRPO_ERR_CHECKPOINT_NOT_FOUND for a missing directory', async () => {
    await expectCode(loadCheckpoint(join(root, 'nope')), 'GRPO_ERR_CHECKPOINT_NOT_FOUND', 'nope');
    expect(await isCompleteCheckpoint(join(root, 'nope'))).toBe(false);
  });

  it('names the config.json field that is wrong or unsupported', async () => {
    const cases: [(j: Record<string, unknown>) => void, string][] = [
      [(j) => (j.hidden_size = '8'), 'hidden_size'],
      [(j) => delete j.vocab_size, 'vocab_size is missing'],
      [(j) => (j.rope_scaling = { type: 'yarn', factor: 2 }), 'rope_scaling.rope_type is "yarn"'],
      [(j) => (j.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1 }), 'high_freq_factor'],
      [(j) => (j.attention_bias = 'yes'), 'attention_bias'],
      [(j) => (j.hidden_act = 'gelu'), 'hidden_act'],
      [(j) => (j.eos_token_id = 'x'), 'eos_token_id'],
      [(j) => (j.num_key_value_heads = 3), 'num_key_value_heads'],
    ];
    for (const [i, [edit, fragment]] of cases.entries()) {
      const dir = join(root, `c${i}`);
      await saveCheckpoint(dir, makeCheckpoint(1));
      await tamper(dir, 'config.json', editJson(edit));
      await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_CONFIG', fragment);
    }
  });

  it('rejects an unknown model_type with GRPO_ERR_MODEL_TYPE listing the supported ones', async () => {
    const dir = join(root, 'mt');
    await saveCheckpoint(dir, makeCheckpoint(1));
    await tamper(dir, 'config.json', editJson((j) => (j.model_type = 'mistral')));
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_MODEL_TYPE', 'model_type is "mistral"; supported: llama, qwen2, qwen3, gemma2');
  });

  it('accepts Hugging Face extras and fills transformers defaults', async () => {
    const dir = join(root, 'hf');
    await saveCheckpoint(dir, makeCheckpoint(1));
    await tamper(
      dir,
      'config.json',
      editJson((j) => {
        Object.assign(j, { rope_scaling: null, transformers_version: '4.46.0', use_cache: true, pretraining_tp: 1, torch_dtype: 'bfloat16' });
        delete j.rms_norm_eps;
        delete j.initializer_range;
      }),
    );
    const back = await loadCheckpoint(dir);
    expect(back.config.rms_norm_eps).toBe(1e-6);
    expect(back.config.torch_dtype).toBe('float32');
    expect(back.config).not.toHaveProperty('transformers_version');
  });

  it('names the first weight that does not match the config', async () => {
    const dir = join(root, 'w');
    await saveCheckpoint(dir, makeCheckpoint(1));
    await tamper(dir, 'config.json', editJson((j) => (j.intermediate_size = 10)));
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'model.layers.0.mlp.gate_proj.weight has shape [12,8], config expects [10,8]');

    const dir2 = join(root, 'w2');
    await saveCheckpoint(dir2, makeCheckpoint(1));
    await tamper(dir2, 'model.safetensors', (b) => {
      const { tensors } = decodeSafetensors(b);
      tensors.delete('model.norm.weight');
      tensors.set('model.layers.0.extra.weight', { shape: [1], data: new Float32Array(1) });
      return encodeSafetensors(tensors, { format: 'pt' });
    });
    await expectCode(loadCheckpoint(dir2), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'missing parameter model.norm.weight');
  });

  it('rejects a tokenizer larger than vocab_size and a malformed trainer_state.json', async () => {
    const dir = join(root, 't');
    await saveCheckpoint(dir, { ...makeCheckpoint(1), trainerState: { step: 3, policyVersion: 1, dataCursor: 0, rng: null, config: {} } });
    const bigTok = CharTokenizer.fromAlphabet(ALPHABET + 'xyz').toJSON();
    await tamper(dir, 'tokenizer.json', () => JSON.stringify(bigTok));
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_MISMATCH', 'tokenizer has 19 tokens');

    const dir2 = join(root, 't2');
    await saveCheckpoint(dir2, { ...makeCheckpoint(1), trainerState: { step: 3, policyVersion: 1, dataCursor: 0, rng: null, config: {} } });
    await tamper(dir2, 'trainer_state.json', editJson((j) => (j.policyVersion = 1.5)));
    await expectCode(loadCheckpoint(dir2), 'GRPO_ERR_CHECKPOINT_TRAINER_STATE', 'policyVersion');
  });

  it('reads a foreign sharded checkpoint without a manifest and skips rotary inv_freq buffers', async () => {
    const src = join(root, 'ours');
    const ckpt = makeCheckpoint(1);
    await saveCheckpoint(src, ckpt);
    const dir = join(root, 'sharded');
    await cp(src, dir, { recursive: true });
    await rm(join(dir, 'checkpoint_manifest.json'));
    await rm(join(dir, 'model.safetensors'));
    const names = [...ckpt.weights.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const tensors: NamedHostTensors = new Map(shard.map((n) => [n, ckpt.weights.get(n)!]));
      if (i === 0) tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [2], data: new Float32Array([1, 0.01]) });
      await writeFile(join(dir, file), encodeSafetensors(tensors, { format: 'pt' }));
      for (const n of tensors.keys()) weightMap[n] = file;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    expect(await isCompleteCheckpoint(dir)).toBe(true);
    const back = await loadCheckpoint(dir);
    expect(back.weights.size).toBe(ckpt.weights.size);
    for (const [name, t] of ckpt.weights) expect([...back.weights.get(name)!.data]).toEqual([...t.data]);
  });
});

describe('weight dtypes and shards', () => {
  it('saves bfloat16 or float16 weights (config torch_dtype says which) and loads them as float32, recording the dtype', async () => {
    const ckpt = makeCheckpoint(3);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const dir = join(root, dtype);
      await saveCheckpoint(dir, ckpt, { weightsDtype: dtype });
      expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe(dtype);
      const back = await loadCheckpoint(dir);
      expect(back.weightsDtype).toBe(dtype);
      expect(back.config.torch_dtype).toBe('float32');
      const step = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11; // half a unit in the last place, relative
      for (const [name, t] of ckpt.weights) {
        const got = back.weights.get(name)!.data;
        t.data.forEach((v, i) => expect(Math.abs(got[i] - v), name).toBeLessThanOrEqual(Math.abs(v) * step + 1e-7));
      }
    }
    expect((await loadCheckpoint(await savedAt('f32', ckpt))).weightsDtype).toBe('float32');
  });

  it('shards weights past maxShardBytes with an index, as transformers does, and reads them back', async () => {
    const ckpt = makeCheckpoint(4);
    const dir = join(root, 'sharded-save');
    await saveCheckpoint(dir, ckpt, { maxShardBytes: 600 });
    const files = (await readdir(dir)).filter((f) => f.startsWith('model'));
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(1);
    expect(files).toContain('model.safetensors.index.json');
    expect(files).not.toContain('model.safetensors');
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(Object.keys(index.weight_map)).toEqual([...ckpt.weights.keys()]);
    expect(index.metadata.total_size).toBe([...ckpt.weights.values()].reduce((a, t) => a + t.data.byteLength, 0));
    expectSameTensors(ckpt.weights, (await loadCheckpoint(dir)).weights);
    // replacing a sharded checkpoint with a one-file one leaves no stale shard behind
    await saveCheckpoint(dir, ckpt);
    expect((await readdir(dir)).filter((f) => f.startsWith('model'))).toEqual(['model.safetensors']);
  });

  it('names a missing shard, a tensor its shard lacks and a malformed index', async () => {
    const ckpt = makeCheckpoint(5);
    const dir = join(root, 'bad-index');
    await saveCheckpoint(dir, ckpt, { maxShardBytes: 600 });
    await rm(join(dir, 'checkpoint_manifest.json')); // a foreign directory from here on
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8'));
    const write = (weightMap: unknown) => writeFile(indexPath, JSON.stringify({ metadata: {}, weight_map: weightMap }));

    await write({ ...index.weight_map, 'model.norm.weight': 'model-00001-of-00001.safetensors' });
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_INCOMPLETE', 'names model-00001-of-00001.safetensors, which is missing');
    const first = index.weight_map['model.embed_tokens.weight'];
    const other = Object.values(index.weight_map).find((f) => f !== first) as string;
    await write({ ...index.weight_map, 'model.embed_tokens.weight': other });
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_MISMATCH', `puts model.embed_tokens.weight in ${other}, which does not hold it`);
    await write({ ...index.weight_map, 'model.norm.weight': '../elsewhere.safetensors' });
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_CONFIG', 'weight_map.model.norm.weight');
    await write(null);
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_CONFIG', 'weight_map');
    await expectCode(saveCheckpoint(join(root, 'x'), ckpt, { weightsDtype: 'int8' as 'float32' }), 'GRPO_ERR_CHECKPOINT_WRITE', 'int8');
  });
});

async function savedAt(name: string, ckpt: Checkpoint): Promise<string> {
  const dir = join(root, name);
  await saveCheckpoint(dir, ckpt);
  return dir;
}
