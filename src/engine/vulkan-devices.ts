/**
 * `--device N` by PCI address (device-select.ts): which GPU N is, and proof that Vulkan exposes
 * exactly that one. The proof needs the device-select layer's debug lines, which it writes to
 * the stderr of the process that creates the Vulkan instance; Node cannot read its own stderr, so
 * a short child process (this Node, dawn.node, the same environment plus the selection) lists the
 * adapters and the parent reads both streams. It costs one Dawn start-up (~0.5 s) per worker
 * start, and only where `--device` is given on a machine with PCI GPUs and the layer.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { GrpoError } from '../shared/errors.js';
import {
  describeGpu,
  describeVulkanDevices,
  deviceSelectEnv,
  findDeviceSelectLayer,
  listPciGpus,
  parseDeviceSelectDebug,
  withEnv,
  type DeviceSelectDebug,
  type PciGpu,
  type VulkanDevice,
} from './device-select.js';
import { CPU_FALLBACK, NO_SUCH_ADAPTER, parseAdapterList, type GpuAdapterEntry } from './webgpu.js';

export interface ChildProbe {
  adapters: GpuAdapterEntry[]; // what dawn.node lists in the child
  debug: DeviceSelectDebug; // what the layer printed (empty without the layer)
  error: string | null; // the child could not run or load dawn.node
}

export type ProbeFn = (change: Record<string, string | undefined>) => Promise<ChildProbe>;

const PROBE_TIMEOUT_MS = 60_000; // Vulkan start-up on a busy node, generous

// argv[1]: the webgpu package's entry as a file URL. Prints one JSON line: Dawn's adapter list.
const CHILD = `const mod = await import(process.argv[1]);
let message = '';
try { const a = await mod.create(['adapter=' + process.argv[2]]).requestAdapter(); message = a === null ? '' : 'accepted'; }
catch (e) { message = String(e && e.message ? e.message : e); }
process.stdout.write(JSON.stringify({ message }) + '\\n');`;

/** Lists adapters in a child process with `change` applied to this environment and the layer's debug on. */
export function probeInChild(change: Record<string, string | undefined>, base: NodeJS.ProcessEnv = process.env): Promise<ChildProbe> {
  let entry: string;
  try {
    entry = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  } catch (err) {
    return Promise.resolve({ adapters: [], debug: parseDeviceSelectDebug(''), error: `the webgpu package cannot be found: ${String(err)}` });
  }
  const env = withEnv(base, { ...change, MESA_VK_DEVICE_SELECT_DEBUG: '1' });
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', CHILD, entry, NO_SUCH_ADAPTER], { env, timeout: PROBE_TIMEOUT_MS, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const debug = parseDeviceSelectDebug(String(stderr));
      const line = String(stdout).trim().split('\n').pop() ?? '';
      try {
        const { message } = JSON.parse(line) as { message: string };
        resolve({ adapters: parseAdapterList(message), debug, error: null });
      } catch {
        resolve({ adapters: [], debug, error: `the adapter probe process failed (${err ? err.message.split('\n')[0] : 'no output'}): ${String(stderr).trim().split('\n').slice(-3).join(' | ')}` });
      }
    });
  });
}

export interface DeviceChoice {
  gpu: PciGpu;
  /** Set in process.env before dawn.node creates the backend's instance (applyDeviceChoice). */
  env: Record<string, string | undefined>;
  vulkan: VulkanDevice; // the layer's entry for it: its Vulkan name
  adapter: GpuAdapterEntry; // the one adapter Dawn lists under `env`
}

export interface ChooseOptions {
  sysRoot?: string;
  env?: NodeJS.ProcessEnv;
  probe?: ProbeFn;
}

function noAdapter(message: string): GrpoError {
  return new GrpoError('GRPO_ERR_NO_GPU_ADAPTER', message);
}

/**
 * The GPU `--device n` names, by PCI address, proved to be the one Vulkan exposes; null where this
 * route does not apply (no PCI GPU in /sys, or no device-select layer: then the adapter index of
 * webgpu.ts chooseAdapter counts). Throws GRPO_ERR_NO_GPU_ADAPTER naming what was probed when n
 * is out of range or the layer did not select the address.
 */
export async function choosePhysicalDevice(n: number, opts: ChooseOptions = {}): Promise<DeviceChoice | null> {
  const gpus = listPciGpus(opts.sysRoot);
  const env = opts.env ?? process.env;
  if (gpus.length === 0 || findDeviceSelectLayer(env) === null) return null;
  const probe = opts.probe ?? ((change) => probeInChild(change, env));
  const machine = gpus.map((g, i) => describeGpu(g, i)).join(', ');
  if (!Number.isInteger(n) || n < 0 || n >= gpus.length) {
    throw noAdapter(`--device ${n} is out of range: this machine has ${gpus.length} GPU(s) in PCI order: ${machine}. Use --device 0..${gpus.length - 1}, or ${CPU_FALLBACK}`);
  }
  let gpu = gpus[n];
  let seen = await probe(deviceSelectEnv(gpu));
  // Only the GPUs this process's Vulkan can use count (a cgroup may leave one of four), when the
  // layer names their addresses; then N indexes those, still in PCI order. A CPU device's address
  // is not one (beside a GPU with VK_EXT_pci_bus_info the layer prints zeros for lavapipe).
  const visible = new Set(seen.debug.devices.flatMap((d) => (d.pci === null || d.type === 'CPU' ? [] : [d.pci])));
  const usable = visible.size > 0 ? gpus.filter((g) => visible.has(g.address)) : gpus;
  if (usable.length !== gpus.length) {
    if (n >= usable.length) {
      throw noAdapter(
        `--device ${n} is out of range: this process's Vulkan can use ${usable.length} of the machine's ${gpus.length} GPUs (${usable.map((g, i) => describeGpu(g, i)).join(', ') || 'none'}; machine: ${machine}; Vulkan devices: ${describeVulkanDevices(seen.debug.devices)}). ` +
          `Under a launcher that gives each worker its own GPU (srun --gpus=1 with ConstrainDevices), use --device 0`,
      );
    }
    if (usable[n].address !== gpu.address) {
      gpu = usable[n];
      seen = await probe(deviceSelectEnv(gpu));
    }
  }
  return { gpu, env: deviceSelectEnv(gpu), ...verify(n, gpu, seen) };
}

/** Proof that the layer selected `gpu` and Dawn sees exactly one adapter, or a coded refusal. */
function verify(n: number, gpu: PciGpu, seen: ChildProbe): { vulkan: VulkanDevice; adapter: GpuAdapterEntry } {
  const probed = `Vulkan devices: ${describeVulkanDevices(seen.debug.devices)}; WebGPU adapters under DRI_PRIME: ${seen.adapters.map((a) => a.name).join(', ') || 'none'}${seen.error ? `; ${seen.error}` : ''}`;
  const chosen = seen.debug.selected === null ? undefined : seen.debug.devices[seen.debug.selected];
  if (seen.debug.rule !== 'device_select_find_dri_prime_tag_default' || chosen === undefined || chosen.pci !== gpu.address) {
    throw noAdapter(
      `--device ${n} is the GPU at ${gpu.address} (${describeGpu(gpu)}), but Mesa's device-select Vulkan layer did not select it by that address ` +
        `(selected: ${chosen === undefined ? 'nothing it reported' : `${chosen.name} at ${chosen.pci ?? 'no PCI address'}`}, by ${seen.debug.rule ?? 'no rule it reported'}). Probed: ${probed}. ` +
        `The layer needs Mesa >= 24 (mesa-vulkan-drivers from bookworm-backports) and a driver with VK_EXT_pci_bus_info; or give each worker one GPU with the launcher and --device 0`,
    );
  }
  const hardware = seen.adapters.filter((a) => !a.software);
  if (seen.adapters.length !== 1 || hardware.length !== 1) {
    throw noAdapter(`--device ${n} (${gpu.address}): with the GPU selected, dawn.node should list exactly that adapter. Probed: ${probed}`);
  }
  return { vulkan: chosen, adapter: { ...hardware[0], index: 0 } };
}

/** Makes the choice this process's: dawn.node's next `create()` sees only that GPU (children inherit it). */
export function applyDeviceChoice(choice: DeviceChoice, target: NodeJS.ProcessEnv = process.env): void {
  for (const [k, v] of Object.entries(choice.env)) {
    if (v === undefined) delete target[k];
    else target[k] = v;
  }
}
