/**
 * The memory a training process may fill, for the fit check before the first step
 * (model/memory-estimate.ts). The estimate is of this process's whole peak RSS, so the limit is
 * what this process could grow to:
 *   - the machine: MemAvailable (/proc/meminfo: free plus reclaimable cache, what other processes
 *     leave) plus this process's own RSS, which the estimate already counts; totalmem() where
 *     /proc/meminfo is unreadable;
 *   - a cgroup (container, Slurm job): its limit minus what the rest of the cgroup uses
 *     (memory.current - own RSS), when lower;
 *   - on the wasm backend, at most its 4 GB heap, where every tensor of the process lives.
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { DEFAULT_MAX_POOLED } from './host-pool.js';
import { tf } from './tf.js';

export const WASM_HEAP_BYTES = 4 * 2 ** 30;

export interface MemoryLimit {
  bytes: number;
  where: string; // what sets it, for error messages
  /** The most the engine itself may hold beyond the tensors: the native backend's buffer pool cap. */
  engineBytes: number;
}

type Read = (path: string) => string;
const readText: Read = (p) => readFileSync(p, 'utf8');

/** cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit, or null when none is set. */
export function cgroupLimit(read: Read = readText): number | null {
  for (const path of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    const n = readNumber(read, path);
    if (n !== null && n > 0 && n < 2 ** 60) return n; // "max" and v1's huge "no limit" skip
  }
  return null;
}

/** Bytes the cgroup uses now (v2 memory.current, v1 memory.usage_in_bytes), or null. */
export function cgroupUsage(read: Read = readText): number | null {
  for (const path of ['/sys/fs/cgroup/memory.current', '/sys/fs/cgroup/memory/memory.usage_in_bytes']) {
    const n = readNumber(read, path);
    if (n !== null && n >= 0) return n;
  }
  return null;
}

/** MemAvailable from /proc/meminfo in bytes, or null where there is none (not Linux). */
export function memAvailable(read: Read = readText): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s*kB/m.exec(read('/proc/meminfo'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null; // no /proc here: the caller falls back to totalmem()
  }
}

export interface MemorySources {
  read?: Read;
  rss?: number; // this process's resident bytes now
  total?: number; // the machine's RAM
}

export function memoryLimit(backend: string = tf.getBackend(), src: MemorySources = {}): MemoryLimit {
  const read = src.read ?? readText;
  const rss = src.rss ?? process.memoryUsage.rss();
  const engineBytes = backend === 'native' ? DEFAULT_MAX_POOLED : 0;
  const avail = memAvailable(read);
  let limit: MemoryLimit =
    avail !== null
      ? { bytes: avail + rss, where: `the memory available to this process (MemAvailable ${gib(avail)} + its own ${gib(rss)})`, engineBytes }
      : { bytes: src.total ?? totalmem(), where: `${gib(src.total ?? totalmem())} of RAM`, engineBytes };
  const cg = cgroupLimit(read);
  if (cg !== null) {
    const others = Math.max(0, (cgroupUsage(read) ?? rss) - rss); // the rest of the cgroup
    const room = cg - others;
    if (room < limit.bytes) limit = { bytes: room, where: `the cgroup memory limit (${gib(cg)}, ${gib(others)} used by other processes)`, engineBytes };
  }
  if (backend === 'wasm' && WASM_HEAP_BYTES < limit.bytes) limit = { bytes: WASM_HEAP_BYTES, where: "the wasm backend's 4 GB heap", engineBytes };
  return limit;
}

function readNumber(read: Read, path: string): number | null {
  try {
    const n = Number(read(path).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null; // no such controller here
  }
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GB`;
}
