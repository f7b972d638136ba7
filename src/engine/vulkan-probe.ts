/**
 * What a WebGPU adapter on Linux needs below Dawn, read from the filesystem only (no Vulkan call,
 * so it costs a few stat()s and is safe in every process): the Vulkan loader `libvulkan.so.1`
 * and the installable client drivers (ICDs), JSON manifests that the loader reads from its
 * search path or from VK_DRIVER_FILES / VK_ICD_FILENAMES. `grpo doctor` prints this, and the
 * "no adapter" error names it, so a user sees which layer is missing.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface IcdManifest {
  path: string;
  /** ICD.library_path from the manifest, or null when it cannot be read. */
  library: string | null;
  /** A CPU implementation (Mesa lavapipe, SwiftShader): correct, far slower than a GPU. */
  software: boolean;
}

export interface VulkanProbe {
  /** Where libvulkan.so.1 was found, or null (then Dawn sees no Vulkan adapter at all). */
  loader: string | null;
  /** The manifests the loader will read, in its order. */
  icds: IcdManifest[];
  /** Where they were looked for: the env variable's value, or the directories searched. */
  searched: string[];
  /** Manifests in places the loader does not search (the NVIDIA container mount): set VK_DRIVER_FILES. */
  outside: string[];
}

/** The driver's own mount in NVIDIA's container images: not on the loader's default path. */
export const NVIDIA_MOUNT_ICD_DIR = '/usr/local/nvidia/share/vulkan/icd.d';

const SOFTWARE_ICD = /lvp|lavapipe|llvmpipe|swiftshader|softpipe/i;

function libDirs(env: NodeJS.ProcessEnv): string[] {
  const triplet = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const fromEnv = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  return [...fromEnv, `/lib/${triplet}`, `/usr/lib/${triplet}`, '/usr/lib64', '/lib64', '/usr/lib', '/usr/local/lib'];
}

/** The loader's ICD search path (Vulkan-Loader LoaderDriverInterface.md, Linux). */
function icdDirs(env: NodeJS.ProcessEnv): string[] {
  const configDirs = (env.XDG_CONFIG_DIRS || '/etc/xdg').split(':').filter(Boolean);
  const dataHome = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local/share');
  const dataDirs = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':').filter(Boolean);
  return [...configDirs.map((d) => join(d, 'vulkan/icd.d')), '/etc/vulkan/icd.d', join(dataHome, 'vulkan/icd.d'), ...dataDirs.map((d) => join(d, 'vulkan/icd.d'))];
}

function jsonFiles(dir: string): string[] {
  try {
    if (!statSync(dir).isDirectory()) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => join(dir, f));
  } catch {
    return []; // a directory that does not exist is the usual case, not an error
  }
}

function readManifest(path: string): IcdManifest {
  let library: string | null = null;
  try {
    const json = JSON.parse(readFileSync(path, 'utf8')) as { ICD?: { library_path?: unknown } };
    library = typeof json.ICD?.library_path === 'string' ? json.ICD.library_path : null;
  } catch {
    library = null; // unreadable or not JSON: listed with no library, the loader skips it too
  }
  return { path, library, software: SOFTWARE_ICD.test(`${path} ${library ?? ''}`) };
}

export function probeVulkan(env: NodeJS.ProcessEnv = process.env): VulkanProbe {
  const loader = libDirs(env).map((d) => join(d, 'libvulkan.so.1')).find((p) => existsSync(p)) ?? null;
  const override = env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES;
  let searched: string[];
  let files: string[];
  if (override) {
    searched = [`${env.VK_DRIVER_FILES ? 'VK_DRIVER_FILES' : 'VK_ICD_FILENAMES'}=${override}`];
    files = override
      .split(':')
      .filter(Boolean)
      .flatMap((p) => (p.endsWith('.json') ? (existsSync(p) ? [p] : []) : jsonFiles(p)));
  } else {
    searched = icdDirs(env);
    files = [...new Set(searched.flatMap(jsonFiles))];
  }
  const outside = jsonFiles(NVIDIA_MOUNT_ICD_DIR).filter((f) => !files.includes(f));
  return { loader, icds: files.map(readManifest), searched, outside };
}

/**
 * The device nodes a hardware Vulkan driver opens: /dev/nvidia0.. (NVIDIA), /dev/dri/renderD*
 * (Mesa: AMD, Intel), /dev/dxg (WSL). Without one no hardware adapter can exist, so `auto` skips
 * loading Dawn (~0.4 s) and says so; `--backend webgpu` probes regardless (lavapipe needs none).
 */
export function gpuDeviceNodes(): string[] {
  const nodes: string[] = [];
  const list = (dir: string, re: RegExp): void => {
    try {
      for (const f of readdirSync(dir)) if (re.test(f)) nodes.push(join(dir, f));
    } catch {
      // no such directory: no nodes there
    }
  };
  list('/dev', /^(nvidia\d+|dxg)$/);
  list('/dev/dri', /^renderD\d+$/);
  return nodes;
}

/** One line for errors and notices: "loader /usr/lib/.../libvulkan.so.1, ICDs lvp_icd.json (software)". */
export function describeVulkan(v: VulkanProbe): string {
  const icds = v.icds.length ? v.icds.map((i) => `${i.path.split('/').pop()}${i.software ? ' (software)' : ''}`).join(', ') : `none in ${v.searched.join(':')}`;
  const hint = v.outside.length ? `; driver manifests outside the loader's path: ${v.outside.join(', ')} (export VK_DRIVER_FILES=${v.outside[0]})` : '';
  return `Vulkan loader ${v.loader ?? 'libvulkan.so.1 not found (apt-get install libvulkan1)'}, ICDs ${icds}${hint}`;
}
