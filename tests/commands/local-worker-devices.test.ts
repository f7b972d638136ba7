/**
 * Which GPU each local worker of `grpo train` samples on: the learner keeps GPU 0, workers fill
 * the other GPUs first, and nothing changes off the WebGPU route, with one GPU, without the
 * device-select layer (identical GPUs could not be told apart) or when the user gave --device.
 */
import { describe, expect, it } from 'vitest';
import { localWorkerDevices } from '../../src/commands/local-workers.js';

const gpuBox = { backend: 'webgpu', device: null, gpus: 4, deviceSelectLayer: true };

describe('localWorkerDevices', () => {
  it('spreads workers over the GPUs the learner does not hold, then wraps', () => {
    expect(localWorkerDevices(3, gpuBox)).toEqual([1, 2, 3]);
    expect(localWorkerDevices(6, gpuBox)).toEqual([1, 2, 3, 0, 1, 2]);
    expect(localWorkerDevices(2, { ...gpuBox, gpus: 2 })).toEqual([1, 0]);
  });

  it('gives every worker the device the user named', () => {
    expect(localWorkerDevices(3, { ...gpuBox, device: 2 })).toEqual([2, 2, 2]);
    expect(localWorkerDevices(2, { ...gpuBox, backend: 'native', device: 0 })).toEqual([0, 0]);
  });

  it('leaves the default device where spreading is not possible or not wanted', () => {
    for (const o of [{ backend: 'native' }, { backend: 'wasm' }, { gpus: 1 }, { gpus: 0 }, { deviceSelectLayer: false }]) {
      expect(localWorkerDevices(3, { ...gpuBox, ...o })).toEqual([null, null, null]);
    }
  });
});
