/**
 * The memory a training process may fill: the machine's RAM (or the cgroup limit a container or
 * Slurm job sets, when lower), and on the wasm backend at most its 4 GB heap, where every tensor
 * of the process lives. Used by the fit check before the first step (model/memory-estimate.ts).
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { DEFAULT_MAX_POOLED } from './host-pool.js';
import { tf } from './tf.js';

export const WASM_HEAP_BYTES = 4 * 2 ** 30;

export interface MemoryLimit {
  bytes: number;
  where: string; // what sets it, for error messages
  /** What the engine itself may hold beyond the tensors: the native backend's buffer pool. */
  engineBytes: number;
}

/** cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit, or null when none is set. */
export function cgroupLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  for (const path of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const n = Number(read(path).trim());
      if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n; // "max" and v1's huge "no limit" skip
    } catch {
      continue; // no such controller here
    }
  }
  return null;
}

export function memoryLimit(backend: string = tf.getBackend()): MemoryLimit {
  const ram = totalmem();
  const cg = cgroupLimit();
  const engineBytes = backend === 'native' ? DEFAULT_MAX_POOLED : 0;
  let limit: MemoryLimit =
    cg !== null && cg < ram ? { bytes: cg, where: `the cgroup memory limit (${gib(cg)})`, engineBytes } : { bytes: ram, where: `${gib(ram)} of RAM`, engineBytes };
  if (backend === 'wasm' && WASM_HEAP_BYTES < limit.bytes) limit = { bytes: WASM_HEAP_BYTES, where: "the wasm backend's 4 GB heap", engineBytes };
  return limit;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GB`;
}
