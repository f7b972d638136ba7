/**
 * Backend selection (initEngine): what it picks, idempotence, coded errors, and that the engine
 * neither leaks tensors nor wasm heap memory across training steps. Also the end-to-end check:
 * a small Llama's loss and gradients are the same on the wasm engine as on the cpu reference.
 */
import { describe, expect, it } from 'vitest';
import { activeBackend, engineInfo, initEngine } from '../../src/engine/backend.js';
import { loadNativeAddon } from '../../src/engine/native-addon.js';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import { expectClose, runOn } from './compare.js';

async function tfjsNodeInstalled(): Promise<boolean> {
  for (const name of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(name);
      return true;
    } catch {
      // not installed: the usual case on this machine
    }
  }
  return false;
}

const hasTfjsNode = await tfjsNodeInstalled();

/** One policy-gradient-shaped step of a tiny Llama: the loss and every gradient. */
function tinyStep(): tf.Tensor[] {
  const config = presetConfig('tiny', { vocabSize: 32, bosId: null, eosId: 1, padId: 0 });
  const model = LlamaModel.create(config, 7);
  const ids = tf.tensor2d(Int32Array.from({ length: 3 * 12 }, (_, i) => (i * 7 + 3) % 32), [3, 12], 'int32');
  const adv = tf.tensor2d([[1], [-0.5], [2]]);
  const vars = [...model.variables().values()]; // in Hugging Face name order
  const { value, grads } = tf.variableGrads(() => model.tokenLogProbs(ids).logp.mul(adv).mean().neg() as tf.Scalar, vars);
  const out = [value, ...vars.map((v) => grads[v.name])];
  model.dispose();
  return out;
}

describe('initEngine', () => {
  it('auto picks tfjs-node when installed, else native (no GPU adapter here; wasm without the addon), and logs one line naming backend and kernels', async () => {
    const lines: string[] = [];
    const info = await initEngine({ backend: 'auto', log: (l) => lines.push(l) });
    expect(info.requested).toBe('auto');
    expect(info.backend).toBe(hasTfjsNode ? 'tensorflow' : loadNativeAddon().addon ? 'native' : 'wasm');
    expect(activeBackend()).toBe(info.backend);
    expect(lines[0]).toMatch(new RegExp(`^\\[engine\\] backend=${info.backend} `));
    if (info.backend === 'native') {
      expect(lines[0]).toContain(`kernels=${info.kernels.join(',')}`);
      expect(info.kernels).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul', 'UnsortedSegmentSum', 'GatherV2']));
      expect(lines.length).toBe(1 + (info.notice ? 1 : 0)); // and the webgpu notice, when set
    }
    if (info.backend === 'wasm') {
      expect(lines[0]).toContain(`kernels=${info.kernels.join(',')}`);
      expect(info.kernels).toEqual(expect.arrayContaining(['UnsortedSegmentSum', 'OneHot']));
      // the webgpu notice (a software or no adapter here) and the native-kernels warning, when set
      expect(lines.length).toBe(1 + (info.notice ? 1 : 0) + (info.warning ? 1 : 0));
      if (info.notice) expect(lines[1]).toMatch(/^\[engine\] notice: webgpu not used: no GPU (adapter \(Vulkan loader .*WebGPU adapters: .*\)|device node \(.*\)); using the CPU route$/);
    }
  });

  it('is idempotent: a second call returns the same info without logging again', async () => {
    const first = await initEngine({ backend: 'wasm', log: () => {} });
    const lines: string[] = [];
    const [a, b] = await Promise.all([initEngine({ backend: 'wasm', log: (l) => lines.push(l) }), initEngine({ backend: 'wasm', log: (l) => lines.push(l) })]);
    expect(a).toBe(first);
    expect(b).toBe(first);
    expect(engineInfo()).toBe(first);
    expect(lines).toEqual([]);
  });

  it('switches between cpu and wasm on request', async () => {
    expect((await initEngine({ backend: 'cpu', log: () => {} })).backend).toBe('cpu');
    expect(activeBackend()).toBe('cpu');
    const wasm = await initEngine({ backend: 'wasm', log: () => {} });
    expect(activeBackend()).toBe('wasm');
    if (wasm.native) {
      expect(wasm.kernels).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul', 'Softmax', 'Transpose', 'GatherV2']));
      expect(wasm.threads).toBeGreaterThanOrEqual(1);
      expect(wasm.blasCore).toBeTruthy();
      expect(wasm.warning).toBeUndefined();
    } else {
      expect(wasm.warning).toMatch(/10-30x slower.*npm run build:native/);
    }
  });

  it.skipIf(hasTfjsNode)('fails with GRPO_ERR_BACKEND_UNAVAILABLE for tensorflow when tfjs-node is not installed', async () => {
    const err = await initEngine({ backend: 'tensorflow', log: () => {} }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_BACKEND_UNAVAILABLE')).toBe(true);
    expect(String(err)).toMatch(/npm install @tensorflow\/tfjs-node/);
  });

  it('rejects an unknown backend name with a coded error', async () => {
    const err = await initEngine({ backend: 'metal' as never, log: () => {} }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_BACKEND_UNAVAILABLE')).toBe(true);
  });
});

describe('the wasm and native engines in training', () => {
  it('gives a small Llama the same loss and gradients as the cpu reference', async () => {
    const reference = await runOn('cpu', tinyStep);
    expectClose(await runOn('wasm', tinyStep), reference, 1e-4);
    if (loadNativeAddon().addon) expectClose(await runOn('native', tinyStep), reference, 1e-4);
  });

  it('keeps tensor count and wasm heap allocations stable across optimizer steps', async () => {
    await initEngine({ backend: 'wasm', log: () => {} });
    const config = presetConfig('tiny', { vocabSize: 32, bosId: null, eosId: 1, padId: 0 });
    const model = LlamaModel.create(config, 3);
    const vars = [...model.variables().values()];
    const ids = tf.tensor2d(Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 5) % 32), [2, 10], 'int32');
    const opt = tf.train.adam(1e-3);
    const step = () => {
      const loss = opt.minimize(() => model.tokenLogProbs(ids).logp.mean().neg() as tf.Scalar, true, vars);
      loss?.dispose();
    };
    step(); // warm-up: the optimizer creates its moment variables
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const tensors = tf.memory().numTensors;
    const dataIds = backend.numDataIds();
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(dataIds);
    opt.dispose();
    model.dispose();
    ids.dispose();
  });
});
