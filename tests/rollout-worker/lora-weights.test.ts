/**
 * LoRA weight payloads at the worker (RunState.loadWeights) and at the coordinator (WeightsStore):
 * a LoRA base payload (base + adapters) then adapter-only payloads give the model the merged
 * weights; adapters for another base are refused with GRPO_ERR_ADAPTER_MISMATCH and the worker
 * keeps its weights; the coordinator keeps the base for late workers and refuses adapters it has
 * no base for; an old-style full payload still works and ends the LoRA chain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsStore } from '../../src/coordinator/weights.js';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { runSpecOf } from '../../src/learner/main.js';
import { parseConfig } from '../../src/shared/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { LoraAdapters, baseFingerprint, mergeAdapters, type LoraSpec } from '../../src/model/lora.js';
import { presetConfig } from '../../src/model/presets.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { RunState } from '../../src/rollout-worker/run-state.js';
import { encodeMessage } from '../../src/shared/codec.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { silentLogger, type AdapterInfo } from '../../src/shared/protocol.js';
import { encodeWeights } from '../../src/shared/weights-wire.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';

const SPEC: LoraSpec = { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'] };
let config: LlamaConfig;
let base: NamedHostTensors;
let state: RunState;

/** Adapters with non-zero B, as host tensors by PEFT name. */
async function adapterTensors(seed: number): Promise<NamedHostTensors> {
  const a = LoraAdapters.create(llamaParamShapes(config), SPEC, seed);
  const host = await a.toHostTensors();
  a.dispose();
  for (const [name, t] of host) if (name.includes('lora_B')) t.data.forEach((_, i) => (t.data[i] = Math.sin(seed + i) * 0.1));
  return host;
}

function info(baseVersion: number, fp = baseFingerprint(base)): AdapterInfo {
  return { base: baseVersion, baseFingerprint: fp, r: SPEC.r, alpha: SPEC.alpha };
}

async function modelWeights(): Promise<NamedHostTensors> {
  return (state.context()!.model as LlamaModel).toHostTensors();
}

function expectMerged(got: NamedHostTensors, adapters: NamedHostTensors): void {
  const a = LoraAdapters.fromHostTensors(llamaParamShapes(config), SPEC, adapters);
  const want = mergeAdapters(base, a.targets, a.scale, adapters);
  a.dispose();
  for (const [name, t] of want) expect(got.get(name)!.data, name).toEqual(t.data);
}

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
  const task = createTask('arithmetic', { seed: 1, options: { max_digits: 1 } });
  const tokenizer = tokenizerForTask(task);
  config = presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, max_position_embeddings: 64 });
  const model = LlamaModel.create(config, 9);
  base = await model.toHostTensors();
  state = new RunState({ rewardThreads: 1, log: silentLogger });
  const spec = runSpecOf('run-lora', parseConfig({ task: 'arithmetic', task_options: { max_digits: 1 } }), model, { tokenizer, task, moduleRewards: [], rewardWeights: { correct: 1, format: 0, partial: 0 } });
  model.dispose();
  await state.applySpec(spec);
});

afterAll(async () => {
  await state?.close();
});

describe('a worker loading LoRA payloads', () => {
  it('merges the adapters of a LoRA base payload, then of adapter-only payloads, into its base', async () => {
    const a0 = await adapterTensors(1);
    state.loadWeights(0, new Map([...base, ...a0]), info(0));
    expect(state.policyVersion).toBe(0);
    expectMerged(await modelWeights(), a0);
    const a1 = await adapterTensors(2);
    state.loadWeights(1, a1, info(0));
    expect(state.policyVersion).toBe(1);
    expectMerged(await modelWeights(), a1); // merged into the base, not into the previous version
  });

  it('refuses adapters for another base or of other shapes, and keeps sampling with its weights', async () => {
    const before = await modelWeights();
    const a2 = await adapterTensors(3);
    for (const [payload, adapter, text] of [
      [a2, info(5), /for LoRA base v5.*holds base v0/],
      [a2, info(0, 'f'.repeat(32)), /ffff.*holds base v0/],
      [new Map([...a2].map(([n, t]) => [n.replace('q_proj', 'q_norm'), t])), info(0), /q_norm, which is no linear layer/],
      [new Map([...a2].map(([n, t]) => [n, n.includes('lora_A') ? { shape: [3, t.shape[1]!], data: new Float32Array(3 * t.shape[1]!) } : t])), info(0), /has shape \[3,32\]/],
    ] as const) {
      try {
        state.loadWeights(2, payload as NamedHostTensors, adapter);
        throw new Error('expected a refusal');
      } catch (err) {
        expect(isGrpoError(err, 'GRPO_ERR_ADAPTER_MISMATCH')).toBe(true);
        expect((err as Error).message).toMatch(text);
      }
    }
    expect(state.policyVersion).toBe(1);
    const after = await modelWeights();
    for (const [name, t] of before) expect(after.get(name)!.data).toEqual(t.data);
  });

  it('takes an old-style full payload, which ends the LoRA chain', async () => {
    state.loadWeights(3, base);
    const got = await modelWeights();
    for (const [name, t] of base) expect(got.get(name)!.data).toEqual(t.data);
    expect(() => state.loadWeights(4, new Map(), info(0))).toThrow(/holds no LoRA base/);
  });
});

describe('a worker sampling with the adapters beside its base (lora_sampling: side)', () => {
  let side: RunState;
  beforeAll(async () => {
    side = new RunState({ rewardThreads: 1, log: silentLogger, loraSampling: 'side' });
    const task = createTask('arithmetic', { seed: 1, options: { max_digits: 1 } });
    const model = LlamaModel.fromHostTensors(config, base);
    await side.applySpec(runSpecOf('run-side', parseConfig({ task: 'arithmetic', task_options: { max_digits: 1 } }), model, { tokenizer: tokenizerForTask(task), task, moduleRewards: [], rewardWeights: { correct: 1, format: 0, partial: 0 } }));
    model.dispose();
  });
  afterAll(async () => {
    await side?.close();
  });

  /** Max |logits of the worker's model - logits of the base with `adapters` merged|. */
  function logitsDiff(adapters: NamedHostTensors): number {
    const a = LoraAdapters.fromHostTensors(llamaParamShapes(config), SPEC, adapters);
    const merged = LlamaModel.fromHostTensors(config, mergeAdapters(base, a.targets, a.scale, adapters));
    const ids = tf.tensor2d([[1, 5, 6, 7, 8]], undefined, 'int32');
    const model = side.context()!.model as LlamaModel;
    const d = tf.tidy(() => model.logits(ids).sub(merged.logits(ids)).abs().max().dataSync()[0]!);
    ids.dispose();
    merged.dispose();
    a.dispose();
    return d;
  }

  it('keeps the base unmerged, applies each adapter version beside it, refuses a mismatch, and drops them on a full payload', async () => {
    const a0 = await adapterTensors(1);
    side.loadWeights(0, new Map([...base, ...a0]), info(0));
    const model = side.context()!.model as LlamaModel;
    const own = await model.toHostTensors();
    for (const [name, t] of base) expect(own.get(name)!.data, name).toEqual(t.data); // the base, unmerged
    expect(logitsDiff(a0)).toBeLessThan(1e-5);
    const a1 = await adapterTensors(2);
    side.loadWeights(1, a1, info(0));
    expect(logitsDiff(a1)).toBeLessThan(1e-5);
    const a2 = await adapterTensors(3);
    expect(() => side.loadWeights(2, a2, info(0, 'f'.repeat(32)))).toThrow(/ffff.*holds base v0/);
    expect(side.policyVersion).toBe(1);
    expect(logitsDiff(a1)).toBeLessThan(1e-5); // still version 1's adapters
    side.loadWeights(3, base);
    expect(model.getAdapters()).toBeNull();
    expect(logitsDiff(new Map([...a1].map(([n, t]) => [n, n.includes('lora_B') ? { shape: t.shape, data: new Float32Array(t.data.length) } : t])))).toBe(0);
  });
});

describe('the coordinator keeping LoRA payloads', () => {
  function upload(store: WeightsStore, tensors: NamedHostTensors, version: number, adapter?: AdapterInfo) {
    const e = encodeWeights(tensors, version, 'f32', 64 * 1024, adapter);
    let done = null;
    for (const m of [e.begin, ...e.chunks, e.end]) done = store.accept(m, encodeMessage(m));
    return done;
  }

  it('keeps the base beside the newest adapters, and sends a late worker the base first', async () => {
    const store = new WeightsStore(64 * 1024 * 1024);
    const a0 = await adapterTensors(1);
    upload(store, new Map([...base, ...a0]), 0, info(0));
    upload(store, await adapterTensors(2), 1, info(0));
    expect(store.latest!.version).toBe(1);
    expect(store.base!.version).toBe(0);
    expect(store.latest!.totalBytes).toBeLessThan(store.base!.totalBytes / 5);
    expect(store.next(null)!.version).toBe(0); // a worker without the base gets it first
    expect(store.next({ epoch: 0, version: 0 })!.version).toBe(1); // then the adapters
    // adapters for a base it does not hold are refused
    expect(() => upload(store, a0, 2, info(1))).toThrow(/applies to LoRA base v1, but this coordinator holds base v0/);
    upload(store, base, 3); // a full payload: no more base
    expect(store.base).toBeNull();
    expect(store.next(null)!.version).toBe(3);
  });
});
