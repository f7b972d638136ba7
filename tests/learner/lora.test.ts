/**
 * GRPO with LoRA end to end: runLearner against a real coordinator (port 0) and a real rollout
 * worker (in-process, real reward thread pool), cpu backend, tiny model. Checks the checkpoint
 * holds PEFT adapter files and no copy of the base, the base checkpoint is untouched, a LoRA
 * checkpoint loads as base + adapters merged, resume restores the adapters and their optimizer
 * state, and `grpo export` writes the merged model and the adapters alone.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportCheckpoint } from '../../src/commands/export.js';
import { startCoordinator, type CoordinatorHandle } from '../../src/coordinator/main.js';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { runLearner } from '../../src/learner/main.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { decodeSafetensors } from '../../src/model/safetensors.js';
import { presetConfig } from '../../src/model/presets.js';
import { startWorker, type WorkerHandle } from '../../src/rollout-worker/main.js';
import { parseConfig, type Config } from '../../src/shared/config.js';
import { silentLogger } from '../../src/shared/protocol.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';

const TOKEN = 'lora-test-token';
const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };
// a reward that varies within a group even for a random model: the completion's length
const REWARD_MODULE = join(import.meta.dirname, '../fixtures/rewards/group-module.mjs');

let root: string;
let coord: CoordinatorHandle;
let worker: WorkerHandle;
let baseHash: string;
let baseBytes: number;

function config(over: Record<string, unknown> = {}): Config {
  return parseConfig({
    task: 'arithmetic',
    task_options: TASK_OPTIONS,
    backend: 'cpu',
    coordinator: coord.url,
    token: TOKEN,
    group_size: 4,
    prompts_per_step: 4,
    micro_batch_size: 16,
    max_gen_len: 6,
    eval_samples: 8,
    eval_interval: 0,
    save_interval: 0,
    lr: 1e-2,
    lr_schedule: 'constant',
    warmup_steps: 0,
    dynamic_sampling: false,
    replay_buffer_size: 0,
    max_staleness: 4,
    kl_coef: 0.05,
    lora_r: 4,
    lora_alpha: 8,
    lora_target_modules: 'all-linear',
    // a reward that varies within a group even for a random model: the completion's length
    reward_module: REWARD_MODULE,
    reward_weights: { correct: 0, group_size: 0, group_async: 0, chaos_group: 0 },
    ...over,
  });
}

async function sha(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-lora-'));
  const task = createTask('arithmetic', { seed: 5, options: TASK_OPTIONS });
  const tokenizer = tokenizerForTask(task);
  const modelConfig = presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, max_position_embeddings: 64, initializer_range: 0.2 });
  const model = LlamaModel.create(modelConfig, 3);
  await saveCheckpoint(join(root, 'base'), { config: modelConfig, weights: await model.toHostTensors(), tokenizer });
  model.dispose();
  baseHash = await sha(join(root, 'base', 'model.safetensors'));
  baseBytes = (await readFile(join(root, 'base', 'model.safetensors'))).byteLength;
  coord = await startCoordinator({ port: 0, token: TOKEN, log: silentLogger, heartbeatMs: 500, peerTimeoutMs: 10_000 });
  worker = await startWorker({ coordinator: coord.url, token: TOKEN, capacity: 8, rewardThreads: 1, backend: 'cpu', log: silentLogger, allowedModules: [REWARD_MODULE] });
});

afterAll(async () => {
  await worker?.stop();
  await coord?.close();
  await rm(root, { recursive: true, force: true });
});

describe('GRPO with LoRA (learner, coordinator, worker)', () => {
  const run = () => join(root, 'run');
  const ckpt = () => join(root, 'run', 'checkpoint');

  it('trains the adapters, checkpoints them in PEFT format and leaves the base untouched', async () => {
    const summary = await runLearner(config(), { checkpoint: join(root, 'base'), out: run(), steps: 2, log: silentLogger });
    expect(summary.steps).toBe(2);
    // the first version went out as the LoRA base (weights + adapters), later ones as adapters alone
    const w = coord.stats().weights;
    expect(w.version).toBe(2);
    expect(w.bytes).toBeLessThan(baseBytes / 3);
    expect(worker.stats().weightsLoaded).toBeGreaterThanOrEqual(2);
    const files = await readdir(ckpt());
    expect(files).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'config.json', 'tokenizer.json']));
    expect(files).not.toContain('model.safetensors'); // the base is referenced, not copied
    const ac = JSON.parse(await readFile(join(ckpt(), 'adapter_config.json'), 'utf8'));
    expect(ac).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none', base_model_name_or_path: join(root, 'base') });
    expect(ac.target_modules).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const adapters = decodeSafetensors(await readFile(join(ckpt(), 'adapter_model.safetensors'))).tensors;
    expect(adapters.size).toBe(2 * 7 * 2);
    expect(adapters.get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!.shape).toEqual([4, 48]);
    expect(adapters.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')!.shape).toEqual([32, 4]);
    expect([...adapters].filter(([n, t]) => n.includes('lora_B') && t.data.some((v) => v !== 0)).length).toBe(14); // trained
    const opt = decodeSafetensors(await readFile(join(ckpt(), 'optimizer.safetensors'))).tensors;
    expect([...opt.keys()].every((k) => k.includes('lora_'))).toBe(true); // optimizer state of the adapters only
    expect(await sha(join(root, 'base', 'model.safetensors'))).toBe(baseHash);
  });

  it('loads a LoRA checkpoint as the base with the adapters merged in', async () => {
    const base = await loadCheckpoint(join(root, 'base'));
    const lora = await loadCheckpoint(ckpt());
    expect(lora.adapters?.spec).toEqual({ r: 4, alpha: 8, dropout: 0, targetModules: ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'] });
    const q = 'model.layers.0.self_attn.q_proj.weight';
    expect(lora.weights.get(q)!.data).not.toEqual(base.weights.get(q)!.data);
    expect(lora.weights.get('model.norm.weight')!.data).toEqual(base.weights.get('model.norm.weight')!.data); // not adapted
  });

  it('resumes with the adapters and their optimizer state', async () => {
    const before = decodeSafetensors(await readFile(join(ckpt(), 'adapter_model.safetensors'))).tensors;
    const summary = await runLearner(config(), { checkpoint: join(root, 'base'), out: run(), steps: 3, resume: ckpt(), log: silentLogger });
    expect(summary.steps).toBe(3);
    expect(summary.stepsThisRun).toBe(1);
    const state = JSON.parse(await readFile(join(ckpt(), 'trainer_state.json'), 'utf8'));
    expect(state.step).toBe(3);
    const after = decodeSafetensors(await readFile(join(ckpt(), 'adapter_model.safetensors'))).tensors;
    const name = 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight';
    // one more step moved B from where it was (not from zero: the adapters were restored)
    const moved = after.get(name)!.data.reduce((s, v, i) => s + Math.abs(v - before.get(name)!.data[i]!), 0);
    const fromZero = after.get(name)!.data.reduce((s, v) => s + Math.abs(v), 0);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(fromZero);
    await expect(
      runLearner(config({ lora_r: 8 }), { checkpoint: join(root, 'base'), out: run(), steps: 4, resume: ckpt(), log: silentLogger }),
    ).rejects.toMatchObject({ code: 'GRPO_ERR_RESUME' });
    expect(await sha(join(root, 'base', 'model.safetensors'))).toBe(baseHash);
  });

  it('exports the merged model (logits of adapters applied, 1e-5) and the adapters alone', async () => {
    const merged = await exportCheckpoint({ checkpoint: ckpt(), out: join(root, 'merged'), merge: true });
    expect(merged.kind).toBe('merged');
    expect(await readdir(join(root, 'merged'))).not.toContain('adapter_config.json');
    const plain = await loadCheckpoint(join(root, 'merged'));
    expect(plain.adapters).toBeUndefined();
    const lora = await loadCheckpoint(ckpt());
    const base = await loadCheckpoint(join(root, 'base'));
    const applied = LlamaModel.fromHostTensors(base.config, base.weights, { trainable: false });
    const { LoraAdapters } = await import('../../src/model/lora.js');
    const { llamaParamShapes } = await import('../../src/model/llama-params.js');
    const adapters = LoraAdapters.fromHostTensors(llamaParamShapes(base.config), lora.adapters!.spec, lora.adapters!.tensors);
    applied.setAdapters(adapters);
    const mergedModel = LlamaModel.fromHostTensors(plain.config, plain.weights);
    const ids = tf.tensor2d([[1, 5, 6, 7, 8]], undefined, 'int32');
    const diff = tf.tidy(() => applied.logits(ids).sub(mergedModel.logits(ids)).abs().max().dataSync()[0]!);
    expect(diff).toBeLessThan(1e-5);
    tf.dispose([ids, applied, adapters, mergedModel]);

    const alone = await exportCheckpoint({ checkpoint: ckpt(), out: join(root, 'adapter'), merge: false });
    expect(alone.kind).toBe('adapters');
    const files = await readdir(join(root, 'adapter'));
    expect(files).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'config.json', 'tokenizer.json']));
    expect(files).not.toContain('optimizer.safetensors');
    expect(files).not.toContain('model.safetensors');
  });
});
