/**
 * `grpo doctor`: the report names the Vulkan loader and ICDs, the WebGPU adapters, tfjs-node-gpu's
 * CUDA 11 / cuDNN 8 libraries (found or not), and loads every backend with a checked matMul.
 * It reports and never throws, also where webgpu or tensorflow cannot load.
 */
import { describe, expect, it } from 'vitest';
import { doctorCommand, formatReport, TFJS_NODE_GPU_LIBS } from '../../src/commands/doctor.js';
import type { CommandIO } from '../../src/commands/io.js';

function captureIO(): { io: CommandIO; out: string[] } {
  const out: string[] = [];
  return { io: { out: (t) => out.push(t), log: () => {}, progressStream: null }, out };
}

describe('grpo doctor', () => {
  it('probes Vulkan, the adapters and the CUDA libraries, and loads every backend', async () => {
    const { io, out } = captureIO();
    const r = await doctorCommand({ json: true }, io);
    expect(JSON.parse(out[0])).toEqual(JSON.parse(JSON.stringify(r)));
    expect(r.backends.map((b) => b.backend)).toEqual(['tensorflow', 'webgpu', 'native', 'wasm', 'cpu', 'auto']);
    const by = Object.fromEntries(r.backends.map((b) => [b.backend, b]));
    expect(by.cpu.ok).toBe(true);
    expect(by.wasm.ok).toBe(true);
    expect(by.auto.ok).toBe(true);
    expect(Object.keys(r.tfjsNodeGpu.libraries)).toEqual([...TFJS_NODE_GPU_LIBS]);
    expect(r.tfjsNodeGpu.needs).toMatch(/CUDA 11\.2.*cuDNN 8\.1/);
    if (r.gpu.adapters.length > 0) {
      expect(by.webgpu.ok).toBe(true);
      expect(by.webgpu.detail).toMatch(/^webgpu via @tensorflow\/tfjs-backend-webgpu adapter 0 /);
    } else {
      expect(by.webgpu.ok).toBe(false);
      expect(by.webgpu.detail).toMatch(/found no GPU adapter\. Probed: .*Vulkan loader/);
    }
    const text = formatReport(r);
    expect(text).toMatch(/^vulkan loader: /m);
    expect(text).toMatch(/^webgpu adapters( \(--device N\))?:$/m);
    expect(text).toMatch(/^device-select layer: /m);
    expect(text).toMatch(/^GPUs in PCI order/m);
    expect(Array.isArray(r.pciGpus)).toBe(true);
    if (r.deviceSelectLayer !== null && r.gpu.adapters.length > 0) expect(r.vulkanDevices.length).toBeGreaterThan(0); // the layer lists what Dawn sees
    expect(text).toMatch(/^  libcudart\.so\.11\.0: /m);
    expect(text).toMatch(/^  wasm +ok /m);
  }, 120_000);

  it('reports a --device that does not exist as a failed webgpu check, not an exception', async () => {
    const { io } = captureIO();
    const r = await doctorCommand({ device: '7' }, io);
    const webgpu = r.backends.find((b) => b.backend === 'webgpu')!;
    expect(webgpu.ok).toBe(false);
    expect(webgpu.detail).toMatch(/no GPU adapter|--device 7 is out of range/);
  }, 120_000);
});
