/**
 * Backend selection. `initEngine` picks the TensorFlow.js backend once per process and logs one
 * line saying what it chose:
 * - auto: @tensorflow/tfjs-node-gpu when installed; else webgpu when a hardware GPU adapter
 *   exists (./webgpu.ts); else @tensorflow/tfjs-node when installed (optional, never required:
 *   this machine cannot install it); else the native backend (./native-backend.ts: tensors in
 *   process memory, no 4 GB ceiling, the native OpenBLAS/C++ kernels) when the addon is built;
 *   else stock wasm with a warning. Skipping webgpu logs one notice line saying why.
 * - native: the native backend, or GRPO_ERR_BACKEND_UNAVAILABLE when the addon is not built.
 * - tensorflow: tfjs-node(-gpu) or GRPO_ERR_BACKEND_UNAVAILABLE.
 * - webgpu: adapter `device` (default: the first hardware one, else lavapipe), or
 *   GRPO_ERR_NO_GPU_ADAPTER naming what was probed.
 * - wasm: wasm with the native kernels when the addon is built, stock wasm (warning) otherwise.
 * - cpu: the stock cpu backend (slow; a reference for tests).
 * On wasm a few portable JS kernels are always installed (UnsortedSegmentSum is missing there and
 * OneHot is wrong; see kernels/portable.ts), so training works even without the addon.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { GrpoError } from '../shared/errors.js';
import { installNativeKernels, installPortableKernels, replacedKernels } from './kernels/index.js';
import { loadNativeAddon } from './native-addon.js';
import { NATIVE_BACKEND, registerNativeBackend } from './native-backend.js';
import { tf } from './tf.js';
import { isWasmBackend } from './wasm-heap.js';
import { gpuDeviceNodes } from './vulkan-probe.js';
import { applyDeviceChoice, choosePhysicalDevice, type DeviceChoice } from './vulkan-devices.js';
import { chooseAdapter, describeProbe, probeGpu, registerWebgpu, type GpuAdapterEntry, type GpuProbe } from './webgpu.js';

export type BackendChoice = 'auto' | 'tensorflow' | 'webgpu' | 'native' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'];

export interface EngineOptions {
  backend?: BackendChoice; // default 'auto'
  /**
   * `--device N`: the Nth GPU in PCI order where Mesa's device-select layer can select it
   * (vulkan-devices.ts), else the WebGPU adapter index as `grpo doctor` lists them; null/undefined = first GPU.
   */
  device?: number | null;
  log?: (line: string) => void; // receives the one start-up line (and the warning, if any)
}

export interface EngineInfo {
  requested: BackendChoice;
  /** tf.getBackend() after selection: 'tensorflow' (tfjs-node or -gpu), 'wasm' or 'cpu'. */
  backend: string;
  /** The package behind it, e.g. '@tensorflow/tfjs-node-gpu' or '@tensorflow/tfjs-backend-wasm'. */
  provider: string;
  /** Whether the native addon's kernels are installed (wasm only). */
  native: boolean;
  /** Names of the wasm kernels replaced (native and portable), sorted. */
  kernels: string[];
  /** Threads the native kernels use and the OpenBLAS CPU kernels in use (native only). */
  threads?: number;
  blasCore?: string;
  /** Set when the engine runs in a degraded mode: what is slow and how to fix it. */
  warning?: string;
  /** webgpu only: the adapter used (index, name, vendor, architecture). */
  adapter?: { index: number; name: string; vendor: string; architecture: string; description: string; software: boolean; pci?: string };
  /** auto only: why webgpu was not used (no GPU adapter, with what was probed). */
  notice?: string;
}

const NATIVE_FIX = 'apt-get install libopenblas-dev && npm run build:native';

let current: EngineInfo | null = null;
let currentDevice: number | null = null; // the `device` current was selected with
let pending: Promise<EngineInfo> | null = null;

/**
 * Selects and initialises the backend. Idempotent: a second call with the same choice returns the
 * first result; a different choice switches backend. Concurrent calls share one initialisation.
 */
export async function initEngine(opts: EngineOptions = {}): Promise<EngineInfo> {
  const requested = opts.backend ?? 'auto';
  if (!BACKEND_CHOICES.includes(requested)) {
    throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', `unknown backend ${JSON.stringify(requested)}; use one of ${BACKEND_CHOICES.join(', ')}`);
  }
  while (pending) await pending.catch(() => undefined);
  const device = opts.device ?? null;
  if (current && current.requested === requested && currentDevice === device && tf.getBackend() === current.backend) return current;
  pending = select(requested, device, opts.log ?? ((line) => console.error(line)));
  try {
    current = await pending;
    currentDevice = device;
    return current;
  } finally {
    pending = null;
  }
}

/** What initEngine chose, or null before it ran. */
export function engineInfo(): EngineInfo | null {
  return current;
}

/** The active TensorFlow.js backend name ('tensorflow', 'wasm', 'cpu', ...). */
export function activeBackend(): string {
  return tf.getBackend();
}

async function select(requested: BackendChoice, device: number | null, log: (line: string) => void): Promise<EngineInfo> {
  let info: EngineInfo | null = null;
  let notice: string | undefined;
  if (requested === 'auto') info = await tryTensorflow(requested, ['@tensorflow/tfjs-node-gpu']);
  if (!info && requested === 'auto' && device === null && gpuDeviceNodes().length === 0) {
    notice = `webgpu not used: no GPU device node (/dev/nvidia*, /dev/dri/renderD*); using the CPU route`;
  } else if (!info && (requested === 'auto' || requested === 'webgpu')) {
    // by PCI address where the device-select layer can do it; set before dawn.node's next instance
    const choice = device === null ? null : await choosePhysicalDevice(device);
    if (choice !== null) applyDeviceChoice(choice);
    const probe = await probeGpu();
    const hardware = probe.adapters.some((a) => !a.software);
    if (requested === 'webgpu' || hardware || device !== null) info = await useWebgpu(requested, choice === null ? chooseAdapter(probe, device) : chosenAdapter(probe, choice, device as number));
    else notice = `webgpu not used: no GPU adapter (${describeProbe(probe)}); using the CPU route`;
  }
  if (!info && requested === 'auto') info = await tryTensorflow(requested, ['@tensorflow/tfjs-node']);
  if (!info && requested === 'tensorflow') info = await tryTensorflow(requested, ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
  if (!info && requested === 'tensorflow') {
    throw new GrpoError(
      'GRPO_ERR_BACKEND_UNAVAILABLE',
      'backend "tensorflow" needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, and neither can be imported; ' +
        'install one (npm install @tensorflow/tfjs-node) or use --backend wasm',
    );
  }
  if (!info && requested === 'cpu') info = await useCpu();
  if (!info && (requested === 'native' || requested === 'auto')) info = await useNative(requested);
  if (!info) info = await useWasm(requested);
  if (notice) info = { ...info, notice };
  log(describe(info));
  if (info.notice) log(`[engine] notice: ${info.notice}`);
  if (info.warning) log(`[engine] warning: ${info.warning}`);
  return info;
}

/** The one adapter dawn.node lists with the choice's environment in place, as `--device n`. */
function chosenAdapter(probe: GpuProbe, choice: DeviceChoice, n: number): GpuAdapterEntry {
  if (probe.adapters.length !== 1) {
    throw new GrpoError('GRPO_ERR_NO_GPU_ADAPTER', `--device ${n} (${choice.gpu.address}): the child probe saw ${choice.adapter.name} alone, this process sees ${describeProbe(probe)}`);
  }
  return { ...probe.adapters[0], index: n, pci: choice.gpu.address };
}

async function useWebgpu(requested: BackendChoice, adapter: Parameters<typeof registerWebgpu>[0]): Promise<EngineInfo> {
  const sel = await registerWebgpu(adapter);
  await setBackendOrThrow('webgpu');
  const info: EngineInfo = {
    requested,
    backend: 'webgpu',
    provider: '@tensorflow/tfjs-backend-webgpu',
    native: false,
    kernels: [],
    adapter: { index: adapter.index, name: adapter.name, vendor: sel.vendor, architecture: sel.architecture, description: sel.description, software: adapter.software, ...(adapter.pci ? { pci: adapter.pci } : {}) },
  };
  if (adapter.software) info.warning = `adapter ${adapter.index} (${adapter.name}) is a software Vulkan driver: correct but slower than --backend wasm; for tests, not training`;
  return info;
}

async function tryTensorflow(requested: BackendChoice, providers: string[]): Promise<EngineInfo | null> {
  for (const provider of providers) {
    try {
      await import(provider); // registers the 'tensorflow' backend with the shared tfjs-core
    } catch {
      continue; // not installed (the usual case here): try the next provider
    }
    try {
      if (await tf.setBackend('tensorflow')) {
        await tf.ready();
        return { requested, backend: tf.getBackend(), provider, native: false, kernels: [] };
      }
    } catch {
      continue; // imported but registered with another copy of tfjs-core: unusable from here
    }
  }
  return null;
}

async function useCpu(): Promise<EngineInfo> {
  await setBackendOrThrow('cpu');
  return { requested: 'cpu', backend: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', native: false, kernels: [] };
}

/** The native backend, or null under auto when the addon is missing (then wasm is next). */
async function useNative(requested: BackendChoice): Promise<EngineInfo | null> {
  const load = loadNativeAddon();
  if (!load.addon) {
    if (requested === 'auto') return null;
    throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', `backend "native" needs the native addon, which is ${load.error}; fix: ${NATIVE_FIX}, or use --backend wasm`);
  }
  const kernels = registerNativeBackend(load.addon);
  await setBackendOrThrow(NATIVE_BACKEND);
  const { threads, blasCore } = load.addon.info();
  return { requested, backend: NATIVE_BACKEND, provider: 'grpo-cluster native (cpu storage + OpenBLAS)', native: true, kernels, threads, blasCore };
}

async function useWasm(requested: BackendChoice): Promise<EngineInfo> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries sit next to the package's main file; resolving it from here works both
  // from src/ (vitest) and from dist/ (tsc output), and never fetches anything.
  const require = createRequire(import.meta.url);
  wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  await setBackendOrThrow('wasm');
  const backend = tf.backend();
  if (!isWasmBackend(backend)) {
    throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', 'the wasm backend does not expose its heap as expected; check the @tensorflow/tfjs-backend-wasm version (4.22 is tested)');
  }
  const load = loadNativeAddon();
  const provider = '@tensorflow/tfjs-backend-wasm';
  if (load.addon) {
    installNativeKernels(load.addon, 'wasm');
    installPortableKernels('wasm'); // only fills what the native set does not cover
    const { threads, blasCore } = load.addon.info();
    return { requested, backend: 'wasm', provider, native: true, kernels: replacedKernels('wasm'), threads, blasCore };
  }
  installPortableKernels('wasm');
  return {
    requested,
    backend: 'wasm',
    provider,
    native: false,
    kernels: replacedKernels('wasm'),
    warning: `native kernels unavailable (${load.error}): training runs 10-30x slower on stock wasm; fix: ${NATIVE_FIX}`,
  };
}

async function setBackendOrThrow(name: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', `backend ${name} failed to initialise: ${String(err)}`, { cause: err });
  }
  if (!ok) throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', `backend ${name} failed to initialise`);
  await tf.ready();
}

function describe(info: EngineInfo): string {
  const parts = [`[engine] backend=${info.backend}`, `provider=${info.provider}`, `requested=${info.requested}`];
  if (info.backend === 'wasm' || info.backend === NATIVE_BACKEND) {
    parts.push(`native=${info.native ? 'yes' : 'no'}`);
    if (info.threads !== undefined) parts.push(`threads=${info.threads}`);
    if (info.blasCore) parts.push(`blas=${info.blasCore}`);
    parts.push(`kernels=${info.kernels.join(',') || 'stock'}`);
  }
  if (info.adapter) parts.push(`adapter=${info.adapter.index}:${JSON.stringify(info.adapter.name)}${info.adapter.pci ? `@${info.adapter.pci}` : ''}`);
  return parts.join(' ');
}
