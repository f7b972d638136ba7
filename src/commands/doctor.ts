/**
 * `grpo doctor [--device N] [--json]`: what this machine offers the tensor engine, probed, not
 * assumed. It prints the Vulkan loader and ICD manifests, the GPUs in PCI order that `--device N`
 * counts (with Mesa's device-select layer: which Vulkan device each is), the WebGPU adapters Dawn
 * sees with their PCI addresses where known, what
 * tfjs-node-gpu would need (CUDA 11.2's libcudart.so.11.0 and cuDNN 8's libcudnn.so.8, found or
 * not) and the GPUs nvidia-smi lists, then loads each backend in turn and checks one small
 * matrix product on it against the exact answer. It reports and never fails: exit 0 even when
 * nothing but the CPU route works (that is a valid machine).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Command } from 'commander';
import { BACKEND_CHOICES, initEngine, type BackendChoice, type EngineInfo } from '../engine/backend.js';
import { tf } from '../engine/tf.js';
import { describeGpu, findDeviceSelectLayer, listPciGpus, type PciGpu, type VulkanDevice } from '../engine/device-select.js';
import { probeInChild } from '../engine/vulkan-devices.js';
import { probeGpu, type GpuProbe } from '../engine/webgpu.js';
import { coerceFlag } from '../shared/config-flags.js';
import { processIO, type CommandIO } from './io.js';

/** What @tensorflow/tfjs-node-gpu 4.22 (libtensorflow 2.9) dlopens; CUDA 12 has neither. */
export const TFJS_NODE_GPU_LIBS = ['libcudart.so.11.0', 'libcublas.so.11', 'libcudnn.so.8'] as const;

export interface BackendCheck {
  backend: BackendChoice;
  ok: boolean;
  /** What loaded (provider, adapter) or why not (the coded error's message). */
  detail: string;
  /** Wall time of the check, start-up and first kernels included, in ms. */
  ms: number;
}

export interface DoctorReport {
  node: string;
  platform: string;
  gpu: GpuProbe;
  /** The machine's GPUs in PCI order, as `--device N` counts them (src/engine/device-select.ts). */
  pciGpus: PciGpu[];
  /** Mesa's device-select layer manifest, or null: then `--device N` counts WebGPU adapters by name. */
  deviceSelectLayer: string | null;
  /** The Vulkan devices the layer lists (with PCI addresses where the driver has VK_EXT_pci_bus_info). */
  vulkanDevices: VulkanDevice[];
  webgpuPackage: string | null;
  tfjsNodeGpu: { needs: string; libraries: Record<string, string | null> };
  nvidiaSmi: string[] | string;
  backends: BackendCheck[];
}

function packageVersion(name: string): string | null {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve(name);
    // walk up from the resolved entry to the package's own package.json
    for (let dir = main; dir !== '/'; dir = join(dir, '..')) {
      const pkg = join(dir, 'package.json');
      if (existsSync(pkg)) {
        const json = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
        if (json.name === name) return json.version ?? null;
      }
    }
    return null;
  } catch {
    return null; // not installed
  }
}

/** Where the dynamic linker would find `lib`: LD_LIBRARY_PATH first, then ldconfig's cache. */
export function findLibrary(lib: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)) {
    if (existsSync(join(dir, lib))) return join(dir, lib);
  }
  for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      const cache = execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
      const line = cache.split('\n').find((l) => l.trim().startsWith(`${lib} `));
      return line ? line.split('=>').pop()!.trim() : null;
    } catch {
      continue; // this path has no ldconfig: try the next
    }
  }
  return null;
}

function nvidiaSmi(): string[] | string {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index,name,pci.bus_id,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    return out.trim().split('\n').filter(Boolean);
  } catch (err) {
    return `nvidia-smi unavailable (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  }
}

/** Loads `backend` and multiplies [[1,2],[3,4]] by [[5,6],[7,8]]: exact in float32. */
async function checkBackend(backend: BackendChoice, device: number | null): Promise<BackendCheck> {
  const t0 = performance.now();
  try {
    const info: EngineInfo = await initEngine({ backend, device, log: () => {} });
    const product = tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2])));
    const got = Array.from(await product.data());
    product.dispose();
    const ok = got.join(',') === '19,22,43,50';
    const where = info.adapter ? ` adapter ${info.adapter.index} ${info.adapter.name} (${[info.adapter.vendor, info.adapter.architecture, info.adapter.pci ? `PCI ${info.adapter.pci}` : ''].filter(Boolean).join(' ')})` : '';
    const extra = info.backend === 'wasm' ? ` native=${info.native ? 'yes' : 'no'}` : '';
    const detail = `${info.backend} via ${info.provider}${where}${extra}${ok ? '' : `: matMul gave ${got.join(',')}, expected 19,22,43,50`}${info.notice ? `; ${info.notice}` : ''}`;
    return { backend, ok, detail, ms: performance.now() - t0 };
  } catch (err) {
    return { backend, ok: false, detail: err instanceof Error ? err.message : String(err), ms: performance.now() - t0 };
  }
}

export async function doctorCommand(opts: { device?: string; json?: boolean }, io: CommandIO): Promise<DoctorReport> {
  const device = opts.device === undefined ? null : (coerceFlag('device', opts.device) as number);
  const gpu = await probeGpu();
  const pciGpus = listPciGpus();
  const deviceSelectLayer = findDeviceSelectLayer();
  const vulkanDevices = deviceSelectLayer === null ? [] : (await probeInChild({})).debug.devices;
  // an adapter's PCI address: the layer's device of the same name, where that name is unique
  for (const a of gpu.adapters) {
    const same = vulkanDevices.filter((d) => d.name === a.name);
    if (a.pci === undefined && same.length === 1 && same[0].pci !== null && same[0].type !== 'CPU') a.pci = same[0].pci;
  }
  const libraries = Object.fromEntries(TFJS_NODE_GPU_LIBS.map((lib) => [lib, findLibrary(lib)]));
  const report: DoctorReport = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    gpu,
    pciGpus,
    deviceSelectLayer,
    vulkanDevices,
    webgpuPackage: packageVersion('webgpu'),
    tfjsNodeGpu: { needs: '@tensorflow/tfjs-node-gpu 4.22 = libtensorflow 2.9: CUDA 11.2+ 11.x runtime and cuDNN 8.1+ 8.x (not CUDA 12)', libraries },
    nvidiaSmi: nvidiaSmi(),
    backends: [],
  };
  // auto last: it re-runs the selection a training command makes, after each backend alone
  for (const backend of [...BACKEND_CHOICES.filter((b) => b !== 'auto'), 'auto' as const]) report.backends.push(await checkBackend(backend, device));
  io.out(opts.json ? JSON.stringify(report) : formatReport(report));
  return report;
}

export function formatReport(r: DoctorReport): string {
  const v = r.gpu.vulkan;
  const lines = [
    `node ${r.node} on ${r.platform}`,
    `vulkan loader: ${v.loader ?? 'libvulkan.so.1 not found (apt-get install libvulkan1)'}`,
    `vulkan ICDs (searched ${v.searched.join(':')}):`,
    ...(v.icds.length ? v.icds.map((i) => `  ${i.path} -> ${i.library ?? '(unreadable)'}${i.software ? ' [software]' : ''}`) : ['  none']),
    ...v.outside.map((f) => `  not on the loader's path: ${f} (export VK_DRIVER_FILES=${f})`),
    `webgpu package: ${r.webgpuPackage ?? 'not installed'}${r.gpu.loadError ? `; ${r.gpu.loadError}` : ''}`,
    `device-select layer: ${r.deviceSelectLayer ?? 'not installed (--device N counts the WebGPU adapters below, by name; mesa-vulkan-drivers >= 24 adds it)'}`,
    ...(r.deviceSelectLayer !== null && r.pciGpus.length > 0
      ? ['GPUs in PCI order (--device N):', ...r.pciGpus.map((g, i) => `  ${describeGpu(g, i)}${vulkanName(r.vulkanDevices, g.address)}`)]
      : [`GPUs in PCI order: ${r.pciGpus.length ? r.pciGpus.map((g, i) => describeGpu(g, i)).join('; ') : 'none in /sys'}`]),
    ...(r.vulkanDevices.length ? ['vulkan devices (device-select layer):', ...r.vulkanDevices.map((d) => `  ${d.name} (${d.type}, ${d.pci ?? 'no PCI address'})`)] : []),
    `webgpu adapters${r.deviceSelectLayer !== null && r.pciGpus.length > 0 ? '' : ' (--device N)'}:`,
    ...(r.gpu.adapters.length ? r.gpu.adapters.map((a) => `  [${a.index}] ${a.name} (${a.backend}${a.software ? ', software' : ''}${a.pci ? `, PCI ${a.pci}` : ''})`) : ['  none']),
    `nvidia-smi: ${Array.isArray(r.nvidiaSmi) ? r.nvidiaSmi.join('; ') || 'no GPUs' : r.nvidiaSmi}`,
    `tfjs-node-gpu needs ${r.tfjsNodeGpu.needs}:`,
    ...Object.entries(r.tfjsNodeGpu.libraries).map(([lib, path]) => `  ${lib}: ${path ?? 'not found'}`),
    'backends:',
    ...r.backends.map((b) => `  ${b.backend.padEnd(10)} ${b.ok ? 'ok  ' : 'FAIL'} ${b.ms.toFixed(0).padStart(6)} ms  ${b.detail}`),
  ];
  return lines.join('\n');
}

/** ` -> Vulkan "NVIDIA H200" (discrete GPU)`, or that this process's Vulkan does not list it. */
function vulkanName(devices: readonly VulkanDevice[], address: string): string {
  if (devices.length === 0) return '';
  const d = devices.find((v) => v.pci === address);
  return d === undefined ? ' -> not among the Vulkan devices of this process' : ` -> Vulkan "${d.name}" (${d.type})`;
}

export function registerDoctor(program: Command, io: () => CommandIO = processIO): void {
  program.addCommand(
    new Command('doctor')
      .description('probe the GPU route (Vulkan, WebGPU adapters, CUDA libraries) and load every tensor backend')
      .option('--device <n>', 'GPU to check: the Nth in PCI order with the device-select layer, else the WebGPU adapter index (default: the first GPU)')
      .option('--json', 'print the report as one JSON object')
      .action(async (opts: { device?: string; json?: boolean }) => {
        await doctorCommand(opts, io());
      }),
  );
}
