/**
 * `--device N` on a node with identical GPUs (4 x "NVIDIA H200"): dawn.node picks an adapter only
 * by a substring of its name, so the Vulkan layer below it must hide every GPU but the chosen one.
 * Mesa's implicit layer VK_LAYER_MESA_device_select (in mesa-vulkan-drivers; it sits above every
 * ICD, NVIDIA's included) does that by PCI address: DRI_PRIME=pci-DDDD_BB_DD_F picks the device
 * whose VK_EXT_pci_bus_info matches, MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 exposes only it.
 * The layer reads both when a Vulkan instance is created, and dawn.node creates one per `create()`,
 * so setting them in process.env before the backend's `create()` is enough (checked on lavapipe).
 * The Vulkan loader's own filters cannot do it: VK_LOADER_DEVICE_SELECT (vid:did, reorders only)
 * and VK_LOADER_DEVICE_ID_FILTER (device id, loader 1.4.326+; bookworm has 1.3.239) cannot tell
 * two GPUs with the same ids apart.
 *
 * N counts GPUs in PCI bus order (nvidia-smi's order), read from /sys: display controllers
 * (PCI class 0x03) of NVIDIA, AMD and Intel; a server's BMC VGA (ASPEED) is not one. Where the
 * layer lists the devices this process's Vulkan sees (a cgroup that leaves one GPU of four),
 * only those count. The layer says which device it selected when MESA_VK_DEVICE_SELECT_DEBUG=1;
 * that output, parsed here, proves the choice (vulkan-devices.ts runs the probe in a child
 * process, whose stderr can be read), so a layer that did not find the address never silently
 * leaves a worker on another worker's GPU.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface PciGpu {
  address: string; // domain:bus:device.function, lower-case hex: 0000:1b:00.0
  vendor: number; // PCI vendor id, e.g. 0x10de
  device: number; // PCI device id
  vendorName: string;
}

/** PCI vendors whose display controllers have Vulkan compute drivers. */
export const GPU_VENDORS: Readonly<Record<number, string>> = { 0x10de: 'NVIDIA', 0x1002: 'AMD', 0x8086: 'Intel' };

const DISPLAY_CLASS = 0x03; // PCI base class: VGA (0x0300), 3D controller (0x0302), other (0x0380)
const PCI_ADDRESS = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

function readHex(path: string): number | null {
  try {
    const v = Number.parseInt(readFileSync(path, 'utf8').trim(), 16);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null; // an entry without the file: not a device we can use
  }
}

/** The machine's GPUs in PCI bus order, read from `<sysRoot>/bus/pci/devices` (no device is opened). */
export function listPciGpus(sysRoot = '/sys'): PciGpu[] {
  const dir = join(sysRoot, 'bus/pci/devices');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return []; // no sysfs (a container without /sys, another OS): nothing to map
  }
  const out: PciGpu[] = [];
  for (const name of names) {
    const address = name.toLowerCase();
    if (!PCI_ADDRESS.test(address)) continue;
    const cls = readHex(join(dir, name, 'class'));
    const vendor = readHex(join(dir, name, 'vendor'));
    const device = readHex(join(dir, name, 'device'));
    if (cls === null || vendor === null || device === null || cls >> 16 !== DISPLAY_CLASS || !(vendor in GPU_VENDORS)) continue;
    out.push({ address, vendor, device, vendorName: GPU_VENDORS[vendor] });
  }
  return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** 0000:1b:00.0 -> pci-0000_1b_00_0, the form DRI_PRIME takes. */
export function driPrimeTag(address: string): string {
  return `pci-${address.replace(/[:.]/g, '_')}`;
}

/**
 * The environment that leaves `gpu` the only Vulkan device of this process. Undefined values
 * are removed: MESA_VK_DEVICE_SELECT (vid:did) would win over DRI_PRIME, NODEVICE_SELECT
 * disables the layer.
 */
export function deviceSelectEnv(gpu: PciGpu): Record<string, string | undefined> {
  return {
    DRI_PRIME: driPrimeTag(gpu.address),
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
    MESA_VK_DEVICE_SELECT: undefined,
    NODEVICE_SELECT: undefined,
  };
}

/** `base` with `change` applied (undefined deletes), as a new object. */
export function withEnv(base: NodeJS.ProcessEnv, change: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const [k, v] of Object.entries(change)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** The loader's implicit layer directories (Vulkan-Loader LoaderLayerInterface.md, Linux). */
function implicitLayerDirs(env: NodeJS.ProcessEnv): string[] {
  const configDirs = (env.XDG_CONFIG_DIRS || '/etc/xdg').split(':').filter(Boolean);
  const dataHome = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local/share');
  const dataDirs = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':').filter(Boolean);
  const added = (env.VK_ADD_IMPLICIT_LAYER_PATH ?? '').split(':').filter(Boolean);
  return [...added, ...configDirs.map((d) => join(d, 'vulkan/implicit_layer.d')), '/etc/vulkan/implicit_layer.d', join(dataHome, 'vulkan/implicit_layer.d'), ...dataDirs.map((d) => join(d, 'vulkan/implicit_layer.d'))];
}

/** The manifest of Mesa's device-select layer on the loader's path, or null (mesa-vulkan-drivers is not installed). */
export function findDeviceSelectLayer(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of implicitLayerDirs(env)) {
    let files: string[];
    try {
      if (!statSync(dir).isDirectory()) continue;
      files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
    } catch {
      continue; // the usual case: the directory does not exist
    }
    for (const f of files) {
      try {
        const json = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { layer?: { name?: unknown } };
        if (json.layer?.name === 'VK_LAYER_MESA_device_select') return join(dir, f);
      } catch {
        continue; // unreadable or not JSON: the loader skips it too
      }
    }
  }
  return null;
}

/** One physical device as the device-select layer lists it (MESA_VK_DEVICE_SELECT_DEBUG=1). */
export interface VulkanDevice {
  index: number; // in the order the ICDs returned them
  vendor: number;
  device: number;
  name: string;
  type: string; // 'discrete GPU', 'integrated GPU', 'CPU', ...
  pci: string | null; // null when no device has VK_EXT_pci_bus_info
}

export interface DeviceSelectDebug {
  devices: VulkanDevice[]; // the last list printed (one per Vulkan instance; they agree)
  selected: number | null; // index into `devices` of the last "selected" line
  rule: string | null; // how it was chosen, e.g. 'device_select_find_dri_prime_tag_default'
}

const GPU_LINE = /^\s*GPU (\d+): ([0-9a-f]+):([0-9a-f]+) "(.*)" (.*?)(?: ([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]))?\s*$/;
const SELECTED_LINE = /^device-select: (\w+) selected (-?\d+)\s*$/;

/** Parses the layer's debug lines out of a process's stderr. */
export function parseDeviceSelectDebug(stderr: string): DeviceSelectDebug {
  let devices: VulkanDevice[] = [];
  let current: VulkanDevice[] | null = null;
  let selected: number | null = null;
  let rule: string | null = null;
  for (const line of stderr.split('\n')) {
    if (line.trim() === 'selectable devices:') {
      current = [];
      devices = current;
      continue;
    }
    const g = GPU_LINE.exec(line);
    if (g !== null && current !== null) {
      current.push({ index: Number(g[1]), vendor: Number.parseInt(g[2], 16), device: Number.parseInt(g[3], 16), name: g[4], type: g[5], pci: g[6] ?? null });
      continue;
    }
    current = null;
    const s = SELECTED_LINE.exec(line.trim());
    if (s !== null) {
      rule = s[1];
      selected = Number(s[2]);
    }
  }
  return { devices, selected, rule };
}

/** "[0] 0000:1b:00.0 NVIDIA 10de:2335" for error messages and doctor. */
export function describeGpu(g: PciGpu, index?: number): string {
  return `${index === undefined ? '' : `[${index}] `}${g.address} ${g.vendorName} ${hex4(g.vendor)}:${hex4(g.device)}`;
}

export function describeVulkanDevices(devices: readonly VulkanDevice[]): string {
  if (devices.length === 0) return 'none listed';
  return devices.map((d) => `${d.name} (${d.type}, ${d.pci === null ? 'no PCI address' : d.pci})`).join(', ');
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
