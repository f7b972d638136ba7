/**
 * The WebGPU route. Always: parsing Dawn's adapter list, choosing an adapter (and the coded
 * errors), the Vulkan probe on a fake filesystem. Where a WebGPU adapter exists (CI: Mesa
 * lavapipe, installed by .ci/run): a tiny Llama's logits, log-probabilities, one GrpoTrainer step
 * and sampling on `webgpu` agree with the `cpu` backend, and tensors do not leak. Without an
 * adapter those skip with the probe's reason, unless GRPO_REQUIRE_TOOLS=1 (CI), where they fail;
 * GRPO_WEBGPU_SKIP (set by .ci/run when Vulkan cannot be installed) names why they skip there.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { describeVulkan, probeVulkan } from '../../src/engine/vulkan-probe.js';
import { chooseAdapter, describeProbe, parseAdapterList, probeGpu, type GpuProbe } from '../../src/engine/webgpu.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { sample } from '../../src/model/sampling.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { parseConfig } from '../../src/shared/config.js';
import { isGrpoError } from '../../src/shared/errors.js';
import type { GroupRollout } from '../../src/shared/protocol.js';
import { expectClose, type HostResult } from './compare.js';

const DAWN_LIST = `no suitable backends found
Available adapters:
 * backend: 'vulkan', name: 'NVIDIA H200'
 * backend: 'vulkan', name: 'NVIDIA H200'
 * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'`;

function fakeProbe(message: string): GpuProbe {
  return { loadError: null, vulkan: { loader: '/usr/lib/libvulkan.so.1', icds: [], searched: ['/etc/vulkan/icd.d'], outside: [] }, adapters: parseAdapterList(message) };
}

describe('adapter list and choice', () => {
  it('parses the adapters dawn.node lists when no adapter matches, in its order', () => {
    expect(parseAdapterList(DAWN_LIST)).toEqual([
      { index: 0, backend: 'vulkan', name: 'NVIDIA H200', software: false },
      { index: 1, backend: 'vulkan', name: 'NVIDIA H200', software: false },
      { index: 2, backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)', software: true },
    ]);
    expect(parseAdapterList('no adapter found')).toEqual([]);
  });

  it('picks the first hardware adapter by default, else the software one', () => {
    expect(chooseAdapter(fakeProbe(DAWN_LIST), null).index).toBe(0);
    const soft = fakeProbe(" * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'");
    expect(chooseAdapter(soft, undefined).software).toBe(true);
    expect(chooseAdapter(fakeProbe(DAWN_LIST), 2).name).toMatch(/llvmpipe/);
  });

  it('fails with GRPO_ERR_NO_GPU_ADAPTER naming the probe and the CPU fallback when there is no adapter', () => {
    const err = (() => {
      try {
        return chooseAdapter(fakeProbe(''), null);
      } catch (e) {
        return e;
      }
    })();
    expect(isGrpoError(err, 'GRPO_ERR_NO_GPU_ADAPTER')).toBe(true);
    expect(String(err)).toMatch(/Vulkan loader \/usr\/lib\/libvulkan\.so\.1/);
    expect(String(err)).toMatch(/ICDs none in \/etc\/vulkan\/icd\.d/);
    expect(String(err)).toMatch(/WebGPU adapters: none/);
    expect(String(err)).toMatch(/--backend wasm/);
  });

  it('refuses a --device out of range, and one it cannot tell from an earlier adapter of the same name', () => {
    const p = fakeProbe(DAWN_LIST);
    expect(() => chooseAdapter(p, 3)).toThrow(/--device 3 is out of range: this process sees 3 adapter/);
    expect(() => chooseAdapter(p, 1)).toThrow(/cannot be told apart from adapter 0 .*--device 0/);
  });
});

describe('Vulkan probe', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'grpo-vk-'));
    mkdirSync(join(root, 'share/vulkan/icd.d'), { recursive: true });
    mkdirSync(join(root, 'lib'));
    writeFileSync(join(root, 'lib/libvulkan.so.1'), '');
    writeFileSync(join(root, 'share/vulkan/icd.d/lvp_icd.json'), JSON.stringify({ ICD: { library_path: 'libvulkan_lvp.so' } }));
    writeFileSync(join(root, 'share/vulkan/icd.d/nvidia_icd.json'), JSON.stringify({ ICD: { library_path: 'libGLX_nvidia.so.0' } }));
    writeFileSync(join(root, 'share/vulkan/icd.d/broken.json'), '{');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('finds the loader through LD_LIBRARY_PATH and reads the manifests on the XDG search path', () => {
    const v = probeVulkan({ LD_LIBRARY_PATH: join(root, 'lib'), XDG_DATA_DIRS: join(root, 'share'), XDG_CONFIG_DIRS: join(root, 'none'), HOME: root });
    expect(v.loader).toBe(join(root, 'lib/libvulkan.so.1'));
    expect(v.icds.map((i) => [i.path.split('/').pop(), i.library, i.software])).toEqual([
      ['broken.json', null, false],
      ['lvp_icd.json', 'libvulkan_lvp.so', true],
      ['nvidia_icd.json', 'libGLX_nvidia.so.0', false],
    ]);
    expect(describeVulkan(v)).toMatch(/lvp_icd\.json \(software\), nvidia_icd\.json/);
  });

  it('reads only VK_DRIVER_FILES when it is set', () => {
    const v = probeVulkan({ VK_DRIVER_FILES: join(root, 'share/vulkan/icd.d/nvidia_icd.json'), HOME: root });
    expect(v.icds.map((i) => i.library)).toEqual(['libGLX_nvidia.so.0']);
    expect(v.searched[0]).toMatch(/^VK_DRIVER_FILES=/);
  });
});

// ---- on a real adapter (lavapipe in CI) ----

const probe = await probeGpu();
const skipReason = process.env.GRPO_WEBGPU_SKIP || (probe.adapters.length === 0 ? `no WebGPU adapter here: ${describeProbe(probe)}` : null);
const mustRun = process.env.GRPO_REQUIRE_TOOLS === '1' && !process.env.GRPO_WEBGPU_SKIP;
if (skipReason && !mustRun) console.warn(`[webgpu] skipping the lavapipe/GPU comparisons: ${skipReason} (install mesa-vulkan-drivers from bookworm-backports, as .ci/run does)`);

describe.runIf(skipReason !== null && mustRun)('webgpu required (GRPO_REQUIRE_TOOLS=1)', () => {
  it('has a WebGPU adapter', () => {
    expect.fail(`${skipReason}; .ci/run installs Mesa lavapipe (or set GRPO_WEBGPU_SKIP=reason)`);
  });
});

type Backend = 'cpu' | 'webgpu';
const TEMPERATURE = 0.9;
const PROMPTS = [[1, 5, 6, 7], [1, 9], [1, 3, 4]];

async function host(list: tf.Tensor[]): Promise<HostResult[]> {
  const out = await Promise.all(list.map(async (t) => ({ shape: [...t.shape], dtype: t.dtype as string, values: Array.from(await t.data()) })));
  tf.dispose(list);
  return out;
}

function hostWeights(w: NamedHostTensors): HostResult[] {
  return [...Object.entries(w)].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => ({ shape: [...t.shape], dtype: t.dtype, values: Array.from(t.data as Float32Array) }));
}

describe.skipIf(skipReason !== null)('webgpu against the cpu backend (tiny Llama)', () => {
  const modelConfig = presetConfig('tiny', { vocabSize: 20, bosId: 1, eosId: 2, padId: 0 }, {
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    initializer_range: 0.3,
  });
  let base: NamedHostTensors;
  let groups: GroupRollout[];
  const ids = [1, 5, 6, 7, 8, 9, 2, 1, 3, 4, 5, 6, 7, 8];

  async function on<T>(backend: Backend, fn: (model: LlamaModel) => Promise<T>): Promise<T> {
    const info = await initEngine({ backend, log: () => {} });
    expect(info.backend).toBe(backend);
    const model = LlamaModel.fromHostTensors(modelConfig, base);
    try {
      return await fn(model);
    } finally {
      model.dispose();
    }
  }

  beforeAll(async () => {
    await initEngine({ backend: 'cpu', log: () => {} });
    const m = LlamaModel.create(modelConfig, 3);
    base = await m.toHostTensors();
    groups = [];
    for (let g = 0; g < PROMPTS.length; g++) {
      const r = await sample(m, Array(4).fill(PROMPTS[g]), { maxNewTokens: 5, temperature: TEMPERATURE, topK: 0, topP: 1, stopTokens: [2], seed: 100 + g });
      groups.push({
        groupId: `g${g}`,
        policyVersion: 0,
        promptTokens: PROMPTS[g],
        completions: r.tokens.map((tokens, j) => ({ tokens, logprobs: r.logprobs[j], text: '', rewards: { r: j % 2 === 0 ? 1 : 0 }, finishReason: r.finishReason[j] })),
      });
    }
    m.dispose();
  }, 120_000);

  it('computes the same logits and token log-probabilities', async () => {
    const run = (backend: Backend) =>
      on(backend, (model) => {
        const [logits, logp] = tf.tidy(() => {
          const x = tf.tensor2d(ids, [2, 7], 'int32');
          return [model.logits(x), model.tokenLogProbs(x, { temperature: TEMPERATURE }).logp];
        });
        return host([logits, logp]);
      });
    const reference = await run('cpu');
    expectClose(await run('webgpu'), reference, 1e-4);
  }, 120_000);

  it('takes the same GRPO train step (loss, metrics and the updated weights)', async () => {
    const config = parseConfig({ group_size: 4, micro_batch_size: 12, max_gen_len: 5, temperature: TEMPERATURE, lr: 3e-3, steps: 10, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false });
    const run = (backend: Backend) =>
      on(backend, async (model) => {
        const trainer = new GrpoTrainer({ config, policy: model });
        const m = await trainer.step(groups, 0);
        trainer.dispose();
        return { m, weights: hostWeights(await model.toHostTensors()) };
      });
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(gpu.m.updated).toBe(true);
    expect(gpu.m.loss).toBeCloseTo(cpu.m.loss, 4);
    expect(gpu.m.gradNorm).toBeCloseTo(cpu.m.gradNorm, 3);
    expect(gpu.m.entropy).toBeCloseTo(cpu.m.entropy, 4);
    expectClose(gpu.weights, cpu.weights, 1e-4);
  }, 180_000);

  it('samples the same tokens with the same log-probabilities for a seed', async () => {
    const run = (backend: Backend) => on(backend, (model) => sample(model, [[1, 5, 6], [1, 9], [1, 3, 4, 7]], { maxNewTokens: 6, temperature: TEMPERATURE, topK: 0, topP: 1, stopTokens: [2], seed: 7 }));
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(gpu.tokens).toEqual(cpu.tokens);
    expect(gpu.finishReason).toEqual(cpu.finishReason);
    gpu.logprobs.forEach((row, r) => row.forEach((v, t) => expect(v).toBeCloseTo(cpu.logprobs[r][t], 4)));
  }, 120_000);

  it('keeps the tensor count stable across train steps on webgpu', async () => {
    const config = parseConfig({ group_size: 4, micro_batch_size: 12, max_gen_len: 5, temperature: TEMPERATURE, steps: 10, warmup_steps: 0, dynamic_sampling: false });
    await on('webgpu', async (model) => {
      const trainer = new GrpoTrainer({ config, policy: model });
      await trainer.step(groups, 0); // warm-up: the optimizer creates its moments
      const before = tf.memory().numTensors;
      await trainer.step(groups, 1);
      await trainer.step(groups, 2);
      expect(tf.memory().numTensors).toBe(before);
      trainer.dispose();
    });
  }, 120_000);

  it('names the adapter it runs on, warns about a software driver, and refuses a --device it does not have', async () => {
    const lines: string[] = [];
    const info = await initEngine({ backend: 'webgpu', device: 0, log: (l) => lines.push(l) });
    expect(info.adapter?.index).toBe(0);
    expect(lines[0]).toMatch(/^\[engine\] backend=webgpu provider=@tensorflow\/tfjs-backend-webgpu requested=webgpu adapter=0:/);
    if (info.adapter?.software) expect(info.warning).toMatch(/software Vulkan driver/);
    const err = await initEngine({ backend: 'webgpu', device: probe.adapters.length, log: () => {} }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_NO_GPU_ADAPTER')).toBe(true);
    expect(String(err)).toMatch(/out of range/);
  }, 60_000);
});
