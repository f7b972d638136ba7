/**
 * The GPU route: @tensorflow/tfjs-backend-webgpu on Node through Dawn's prebuilt `webgpu` package
 * (dawn.node). On Linux Dawn runs over Vulkan, so an NVIDIA or AMD GPU works with its driver's
 * Vulkan ICD and no CUDA toolkit; Mesa's lavapipe (a CPU Vulkan driver) runs the same code in CI.
 *
 * Adapters: dawn.node hands out one adapter per `create()` and picks it by a substring of its
 * device name (flag `adapter=NAME`); with a name no adapter has it rejects with the list of all
 * adapters, which is how `probeGpu` enumerates them (no other API lists them). Identical GPUs
 * (4 x H200) cannot be told apart by name: there `--device N` selects the Nth GPU by PCI address
 * through Mesa's device-select Vulkan layer (device-select.ts, vulkan-devices.ts), which leaves
 * dawn.node one adapter; without that layer the index below counts adapters by name, and a
 * launcher that gives each worker one GPU (srun --gpus=1 with ConstrainDevices, a container per
 * GPU) with `--device 0` is the other way.
 */
import { GrpoError } from '../shared/errors.js';
import { tf } from './tf.js';
import { describeVulkan, probeVulkan, type VulkanProbe } from './vulkan-probe.js';

export interface GpuAdapterEntry {
  index: number;
  /** Dawn's device name, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6, 256 bits)". */
  name: string;
  backend: string; // 'vulkan' on Linux
  software: boolean; // a CPU implementation (lavapipe): correct, slower than the CPU route
  pci?: string; // its PCI address, when known (chosen by `--device N` through the device-select layer)
}

export interface GpuProbe {
  /** Why dawn.node could not load (package missing, unsupported platform), else null. */
  loadError: string | null;
  vulkan: VulkanProbe;
  adapters: GpuAdapterEntry[];
}

export interface WebgpuSelection {
  adapter: GpuAdapterEntry;
  vendor: string;
  architecture: string;
  description: string;
}

interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: Record<string, unknown>;
}
interface DawnGpu {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<DawnAdapter | null>;
}
interface DawnAdapter {
  features: Set<string>;
  limits: Record<string, number>;
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  requestDevice(desc: unknown): Promise<unknown>;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe/i;
/** A device name no adapter has: requestAdapter then rejects with the list of all adapters. */
export const NO_SUCH_ADAPTER = 'grpo-list-adapters-\u0001';

let dawn: DawnModule | null = null;

async function loadDawn(): Promise<DawnModule> {
  if (!dawn) {
    const mod = (await import('webgpu')) as unknown as DawnModule;
    // GPUBufferUsage, GPUMapMode, ...: tfjs-backend-webgpu reads them as browser globals
    for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) Object.assign(globalThis, { [k]: v });
    dawn = mod;
  }
  return dawn;
}

export function parseAdapterList(message: string): GpuAdapterEntry[] {
  const out: GpuAdapterEntry[] = [];
  for (const m of message.matchAll(/^\s*\* backend: '([^']*)', name: '(.*)'\s*$/gm)) {
    out.push({ index: out.length, backend: m[1], name: m[2], software: SOFTWARE_ADAPTER.test(m[2]) });
  }
  return out;
}

/** Loads dawn.node and lists the adapters it sees, in its order (the order `--device` counts). */
export async function probeGpu(): Promise<GpuProbe> {
  const vulkan = probeVulkan();
  let mod: DawnModule;
  try {
    mod = await loadDawn();
  } catch (err) {
    return { loadError: `the webgpu package (dawn.node) cannot load: ${err instanceof Error ? err.message : String(err)}`, vulkan, adapters: [] };
  }
  try {
    const adapter = await mod.create([`adapter=${NO_SUCH_ADAPTER}`]).requestAdapter();
    if (adapter === null) return { loadError: null, vulkan, adapters: [] }; // Dawn found no adapter at all
    return { loadError: 'dawn.node accepted an adapter name that no adapter has; cannot list adapters', vulkan, adapters: [] };
  } catch (err) {
    return { loadError: null, vulkan, adapters: parseAdapterList(err instanceof Error ? err.message : String(err)) };
  }
}

/** The probe in one line: what an error or a fallback notice says was looked at. */
export function describeProbe(p: GpuProbe): string {
  const adapters = p.adapters.length ? p.adapters.map((a) => `[${a.index}] ${a.name} (${a.backend}${a.software ? ', software' : ''})`).join(', ') : 'none';
  return `${p.loadError ? `${p.loadError}; ` : ''}${describeVulkan(p.vulkan)}; WebGPU adapters: ${adapters}`;
}

export const CPU_FALLBACK = 'the CPU route needs no GPU: --backend wasm (native OpenBLAS kernels; what auto picks without a GPU)';

/**
 * Which adapter `device` names: the index given, else the first hardware adapter, else (webgpu
 * asked for by name) the first software one. Throws GRPO_ERR_NO_GPU_ADAPTER naming the probe.
 */
export function chooseAdapter(p: GpuProbe, device: number | null | undefined): GpuAdapterEntry {
  const list = p.adapters;
  if (list.length === 0) {
    throw new GrpoError('GRPO_ERR_NO_GPU_ADAPTER', `--backend webgpu found no GPU adapter. Probed: ${describeProbe(p)}. Install the GPU's Vulkan driver (NVIDIA: the driver's nvidia_icd.json; containers: libvulkan1 and NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility), check with grpo doctor, or use ${CPU_FALLBACK}`);
  }
  if (device !== null && device !== undefined) {
    const chosen = list[device];
    if (!chosen) {
      throw new GrpoError('GRPO_ERR_NO_GPU_ADAPTER', `--device ${device} is out of range: this process sees ${list.length} adapter(s): ${describeProbe(p)}. Use --device 0..${list.length - 1}, or ${CPU_FALLBACK}`);
    }
    const shadow = list.slice(0, device).find((a) => a.name.includes(chosen.name));
    if (shadow) {
      throw new GrpoError(
        'GRPO_ERR_NO_GPU_ADAPTER',
        `--device ${device} (${chosen.name}) cannot be told apart from adapter ${shadow.index} (${shadow.name}): dawn.node selects adapters by name. ` +
          `Install Mesa's device-select Vulkan layer (mesa-vulkan-drivers >= 24, bookworm-backports), which lets --device N pick the Nth GPU by PCI address; ` +
          'or give each worker one GPU with the launcher (srun --gpus=1 with ConstrainDevices=yes, one container per GPU) and --device 0',
      );
    }
    return chosen;
  }
  return list.find((a) => !a.software) ?? list[0];
}

/**
 * Registers tfjs's webgpu backend on the chosen adapter (the caller then calls tf.setBackend).
 * The device gets the adapter's own limits, as tfjs-backend-webgpu's browser registration asks.
 */
export async function registerWebgpu(adapter: GpuAdapterEntry): Promise<WebgpuSelection> {
  const mod = await loadDawn();
  const gpu = mod.create([`adapter=${adapter.name}`]);
  const nav = (globalThis as unknown as { navigator?: object }).navigator;
  if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  const found = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!found) throw new GrpoError('GRPO_ERR_NO_GPU_ADAPTER', `adapter ${adapter.index} (${adapter.name}) disappeared between the probe and its use`);
  const info = found.info ?? {};
  const selection: WebgpuSelection = { adapter, vendor: info.vendor ?? '', architecture: info.architecture ?? '', description: info.description ?? '' };
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu'); // the package's own (browser) registration
  tf.registerBackend('webgpu', async () => {
    const l = found.limits;
    const device = await found.requestDevice({
      requiredFeatures: found.features.has('timestamp-query') ? ['timestamp-query'] : [],
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      },
    });
    return new WebGPUBackend(device as ConstructorParameters<typeof WebGPUBackend>[0], info as ConstructorParameters<typeof WebGPUBackend>[1]);
  });
  return selection;
}
