/**
 * `--device N` by PCI address (src/engine/device-select.ts, vulkan-devices.ts). Always: the GPU
 * list from a fake /sys tree, the environment for a chosen GPU, parsing the device-select layer's
 * debug lines, and the choice with a simulated layer (4 x H200, a cgroup that leaves one, a layer
 * that did not select the address). Where Mesa's layer and a WebGPU adapter exist (lavapipe in
 * CI): the real child probe, the refusal when the layer cannot find the address, and dawn.node
 * still listing its one adapter with the selection in the environment.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deviceSelectEnv,
  driPrimeTag,
  findDeviceSelectLayer,
  listPciGpus,
  parseDeviceSelectDebug,
  withEnv,
} from '../../src/engine/device-select.js';
import { applyDeviceChoice, choosePhysicalDevice, probeInChild, type ChildProbe } from '../../src/engine/vulkan-devices.js';
import { parseAdapterList, probeGpu } from '../../src/engine/webgpu.js';
import { isGrpoError } from '../../src/shared/errors.js';

const H200 = [
  ['0000:db:00.0', '0x030200', '0x10de', '0x2335'],
  ['0000:1b:00.0', '0x030200', '0x10de', '0x2335'],
  ['0000:5d:00.0', '0x030200', '0x10de', '0x2335'],
  ['0000:3b:00.0', '0x030200', '0x10de', '0x2335'],
];

let root: string;
let sys4: string; // 4 x H200, a BMC VGA, a NIC, an entry without files
let sys1: string; // one GPU at 0000:1b:00.0
let layerEnv: NodeJS.ProcessEnv; // a loader path that has the device-select layer's manifest

function fakeSys(dir: string, devices: string[][]): string {
  for (const [addr, cls, vendor, device] of devices) {
    const d = join(dir, 'bus/pci/devices', addr);
    mkdirSync(d, { recursive: true });
    if (cls) writeFileSync(join(d, 'class'), `${cls}\n`);
    if (vendor) writeFileSync(join(d, 'vendor'), `${vendor}\n`);
    if (device) writeFileSync(join(d, 'device'), `${device}\n`);
  }
  return dir;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'grpo-devsel-'));
  sys4 = fakeSys(join(root, 'sys4'), [...H200, ['0000:02:00.0', '0x030000', '0x1a03', '0x2000'], ['0000:18:00.0', '0x020000', '0x15b3', '0x101b'], ['0000:19:00.0', '', '', '']]);
  sys1 = fakeSys(join(root, 'sys1'), [H200[1]]);
  const layers = join(root, 'share/vulkan/implicit_layer.d');
  mkdirSync(layers, { recursive: true });
  writeFileSync(join(layers, 'VkLayer_MESA_device_select.json'), JSON.stringify({ file_format_version: '1.0.0', layer: { name: 'VK_LAYER_MESA_device_select', type: 'GLOBAL' } }));
  writeFileSync(join(layers, 'other.json'), JSON.stringify({ layer: { name: 'VK_LAYER_OTHER' } }));
  layerEnv = { XDG_DATA_DIRS: join(root, 'share'), XDG_CONFIG_DIRS: join(root, 'none'), HOME: root };
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What the layer prints with MESA_VK_DEVICE_SELECT_DEBUG=1 (Mesa 25 device_select_layer.c's format). */
function layerDebug(addresses: string[], selected: number | null, rule = 'device_select_find_dri_prime_tag_default', lvpZeros = false): string {
  const list = addresses.map((a, i) => `  GPU ${i}: 10de:2335 "NVIDIA H200" discrete GPU ${a}`);
  // beside a GPU with VK_EXT_pci_bus_info the layer prints lavapipe's (unfilled) address as zeros
  const lines = ['selectable devices:', ...list, `  GPU 9: 10005:0 "llvmpipe (LLVM 15.0.6, 256 bits)" CPU${lvpZeros ? ' 0000:00:00.0' : ''}`];
  if (selected !== null) lines.push(`device-select: ${rule} selected ${selected}`);
  return [...lines, ...lines].join('\n'); // Dawn makes two instances: the list comes twice
}

/** A simulated child probe: the layer sees `visible`, selects the DRI_PRIME address when it is among them. */
function simulated(visible: string[], opts: { rule?: string } = {}) {
  const calls: Record<string, string | undefined>[] = [];
  const probe = async (change: Record<string, string | undefined>): Promise<ChildProbe> => {
    calls.push(change);
    const idx = visible.findIndex((a) => driPrimeTag(a) === change.DRI_PRIME);
    const picked = idx >= 0 ? idx : 0;
    return {
      adapters: parseAdapterList(" * backend: 'vulkan', name: 'NVIDIA H200'"),
      debug: parseDeviceSelectDebug(layerDebug(visible, picked, idx >= 0 ? opts.rule : 'device_select_find_boot_vga_default', true)),
      error: null,
    };
  };
  return { probe, calls };
}

describe('the GPUs in PCI order from /sys', () => {
  it('lists NVIDIA, AMD and Intel display controllers in bus order, not the BMC VGA or a NIC', () => {
    expect(listPciGpus(sys4)).toEqual(['0000:1b:00.0', '0000:3b:00.0', '0000:5d:00.0', '0000:db:00.0'].map((address) => ({ address, vendor: 0x10de, device: 0x2335, vendorName: 'NVIDIA' })));
    expect(listPciGpus(join(root, 'nothing'))).toEqual([]);
  });

  it('computes the DRI_PRIME tag and the environment that leaves one GPU', () => {
    const [gpu] = listPciGpus(sys1);
    expect(driPrimeTag(gpu.address)).toBe('pci-0000_1b_00_0');
    const env = deviceSelectEnv(gpu);
    expect(env).toEqual({ DRI_PRIME: 'pci-0000_1b_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1', MESA_VK_DEVICE_SELECT: undefined, NODEVICE_SELECT: undefined });
    expect(withEnv({ MESA_VK_DEVICE_SELECT: '10de:2335', NODEVICE_SELECT: '1', PATH: '/bin' }, env)).toEqual({ PATH: '/bin', DRI_PRIME: 'pci-0000_1b_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' });
  });

  it("finds the device-select layer's manifest on the loader's implicit layer path", () => {
    expect(findDeviceSelectLayer(layerEnv)).toBe(join(root, 'share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json'));
    expect(findDeviceSelectLayer({ XDG_DATA_DIRS: join(root, 'none'), XDG_CONFIG_DIRS: join(root, 'none'), HOME: root, VK_ADD_IMPLICIT_LAYER_PATH: join(root, 'share/vulkan/implicit_layer.d') })).toMatch(/VkLayer_MESA_device_select\.json$/);
  });

  it("parses the layer's device list and its choice", () => {
    const d = parseDeviceSelectDebug(`noise\n${layerDebug(['0000:1b:00.0', '0000:3b:00.0'], 1)}\nWarning: something else`);
    expect(d.devices).toHaveLength(3);
    expect(d.devices[1]).toEqual({ index: 1, vendor: 0x10de, device: 0x2335, name: 'NVIDIA H200', type: 'discrete GPU', pci: '0000:3b:00.0' });
    expect(d.devices[2]).toMatchObject({ name: 'llvmpipe (LLVM 15.0.6, 256 bits)', type: 'CPU', pci: null, vendor: 0x10005 });
    expect(d).toMatchObject({ selected: 1, rule: 'device_select_find_dri_prime_tag_default' });
    expect(parseDeviceSelectDebug('')).toEqual({ devices: [], selected: null, rule: null });
  });
});

describe('choosing --device N by PCI address (simulated layer)', () => {
  const all = ['0000:1b:00.0', '0000:3b:00.0', '0000:5d:00.0', '0000:db:00.0'];

  it('picks the Nth GPU of four identical ones and proves it with the layer', async () => {
    const { probe, calls } = simulated(all);
    const choice = await choosePhysicalDevice(2, { sysRoot: sys4, env: layerEnv, probe });
    expect(choice).not.toBeNull();
    expect(choice!.gpu.address).toBe('0000:5d:00.0');
    expect(choice!.env.DRI_PRIME).toBe('pci-0000_5d_00_0');
    expect(choice!.vulkan).toMatchObject({ name: 'NVIDIA H200', pci: '0000:5d:00.0' });
    expect(calls).toHaveLength(1);
    const target: NodeJS.ProcessEnv = { MESA_VK_DEVICE_SELECT: '10de:2335' };
    applyDeviceChoice(choice!, target);
    expect(target).toEqual({ DRI_PRIME: 'pci-0000_5d_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' });
  });

  it('refuses N out of range naming the GPUs it found', async () => {
    const err = await choosePhysicalDevice(4, { sysRoot: sys4, env: layerEnv, probe: simulated(all).probe }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_NO_GPU_ADAPTER')).toBe(true);
    expect(String(err)).toMatch(/--device 4 is out of range: this machine has 4 GPU\(s\) in PCI order: \[0\] 0000:1b:00\.0 NVIDIA 10de:2335, .*\[3\] 0000:db:00\.0/);
    expect(String(err)).toMatch(/--backend wasm/);
  });

  it('counts only the GPUs this process can use when a cgroup leaves one of four', async () => {
    const { probe, calls } = simulated(['0000:5d:00.0']);
    const choice = await choosePhysicalDevice(0, { sysRoot: sys4, env: layerEnv, probe });
    expect(choice!.gpu.address).toBe('0000:5d:00.0');
    expect(calls.map((c) => c.DRI_PRIME)).toEqual(['pci-0000_1b_00_0', 'pci-0000_5d_00_0']); // re-probed for the usable one
    const err = await choosePhysicalDevice(1, { sysRoot: sys4, env: layerEnv, probe }).catch((e: unknown) => e);
    expect(String(err)).toMatch(/this process's Vulkan can use 1 of the machine's 4 GPUs \(\[0\] 0000:5d:00\.0 .*use --device 0/);
  });

  it('refuses when the layer did not select the address, naming what it saw', async () => {
    const err = await choosePhysicalDevice(1, { sysRoot: sys4, env: layerEnv, probe: simulated(all, { rule: 'device_select_find_boot_vga_default' }).probe }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_NO_GPU_ADAPTER')).toBe(true);
    expect(String(err)).toMatch(/GPU at 0000:3b:00\.0 .* did not select it by that address \(selected: NVIDIA H200 at 0000:3b:00\.0, by device_select_find_boot_vga_default\)/);
    expect(String(err)).toMatch(/Vulkan devices: NVIDIA H200 \(discrete GPU, 0000:1b:00\.0\)/);
  });

  it('leaves the choice to the adapter index without PCI GPUs or without the layer', async () => {
    const { probe, calls } = simulated(all);
    expect(await choosePhysicalDevice(0, { sysRoot: join(root, 'nothing'), env: layerEnv, probe })).toBeNull();
    expect(await choosePhysicalDevice(0, { sysRoot: sys4, env: { XDG_DATA_DIRS: join(root, 'none'), XDG_CONFIG_DIRS: join(root, 'none'), HOME: root }, probe })).toBeNull();
    expect(calls).toHaveLength(0);
  });
});

// ---- on this machine: Mesa's real layer over lavapipe (CI), skipped where either is missing ----

const realLayer = findDeviceSelectLayer();
const real = await probeGpu();
const skipReal = process.env.GRPO_WEBGPU_SKIP || (realLayer === null ? "no Mesa device-select layer (mesa-vulkan-drivers)" : real.adapters.length === 0 ? 'no WebGPU adapter' : null);
if (skipReal) console.warn(`[device-select] skipping the lavapipe checks: ${skipReal}`);

describe.skipIf(skipReal !== null)('the device-select layer over lavapipe', () => {
  it('lists the Vulkan devices in a child process: lavapipe, a CPU device without a PCI address', async () => {
    const seen = await probeInChild({});
    expect(seen.error).toBeNull();
    expect(seen.adapters.map((a) => a.name)).toEqual(real.adapters.map((a) => a.name));
    const lvp = seen.debug.devices.find((d) => /llvmpipe/.test(d.name));
    expect(lvp).toMatchObject({ type: 'CPU', pci: null });
  }, 60_000);

  it('refuses --device 0 for a GPU the layer cannot find, naming what Vulkan sees', async () => {
    const err = await choosePhysicalDevice(0, { sysRoot: sys1 }).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_NO_GPU_ADAPTER')).toBe(true);
    expect(String(err)).toMatch(/GPU at 0000:1b:00\.0 .* did not select it by that address/);
    expect(String(err)).toMatch(/llvmpipe.*\(CPU, no PCI address\)/);
  }, 60_000);

  it('keeps the one adapter usable with a selection in the environment', async () => {
    const saved = { ...process.env };
    try {
      applyDeviceChoice({ gpu: listPciGpus(sys1)[0], env: deviceSelectEnv(listPciGpus(sys1)[0]), vulkan: { index: 0, vendor: 0, device: 0, name: '', type: '', pci: null }, adapter: real.adapters[0] });
      expect(process.env.DRI_PRIME).toBe('pci-0000_1b_00_0');
      const again = await probeGpu(); // a new dawn.node instance: the layer reads the environment now
      expect(again.adapters.map((a) => a.name)).toEqual(real.adapters.map((a) => a.name));
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  }, 60_000);
});
