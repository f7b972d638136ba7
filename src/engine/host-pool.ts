/**
 * Recycling of the native backend's tensor buffers. A fresh typed array costs far more than its
 * kernel: the kernel's first touch faults in every page (a 5.7 MB Multiply output: 30 ms fresh vs
 * 1.6 ms into a reused buffer, measured here), and freed buffers wait for V8's GC, which inflates
 * the peak RSS. So kernel outputs come from free lists keyed by byte length, and a buffer goes
 * back when the last tensor using it is disposed.
 *
 * Only buffers this pool allocated are recycled, and never one that escaped: a read (dataSync,
 * data, bufferSync all go through readSync) hands the backend's own array to the caller, who may
 * keep it, so a buffer that was read is left to the GC. Stock cpu kernels may store a view of an
 * input's buffer as another tensor (a contiguous slice is a subarray), so the pool counts every
 * tensor whose data lies in a buffer, through the one funnel the cpu backend stores data by
 * (`data.set`), and recycles a buffer only when that count is back to zero.
 */
import type { DataType } from './wasm-heap.js';

type Values = Float32Array | Int32Array | Uint8Array;

/** The parts of tfjs's MathBackendCPU the pool hooks. */
export interface PooledBackend {
  data: {
    get(dataId: object): { values?: unknown } | undefined;
    set(dataId: object, value: { values?: unknown }): void;
    has(dataId: object): boolean;
  };
  readSync(dataId: object): unknown;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Pooled bytes kept at most; beyond this a freed buffer is left to the GC. */
export const DEFAULT_MAX_POOLED = poolCapFromEnv() ?? 2 ** 31;

/** GRPO_POOL_MB overrides the cap (0 turns recycling off), for memory experiments. */
function poolCapFromEnv(): number | null {
  const raw = process.env.GRPO_POOL_MB;
  if (raw === undefined || raw === '') return null;
  const mb = Number(raw);
  return Number.isFinite(mb) && mb >= 0 ? mb * 2 ** 20 : null;
}

export class HostPool {
  private readonly free = new Map<number, ArrayBuffer[]>(); // by byte length
  private readonly owned = new WeakSet<ArrayBuffer>();
  private readonly users = new WeakMap<ArrayBuffer, number>();
  private readonly escaped = new WeakSet<ArrayBuffer>();
  private pooledBytes = 0;
  /** Buffers handed out again instead of allocated (for tests and benchmarks). */
  reused = 0;
  /** Buffers freed because the pool was full (for tests and benchmarks). */
  dropped = 0;

  constructor(private readonly maxPooled = DEFAULT_MAX_POOLED) {}

  /** Hooks `backend` (once) so its stores, reads and disposals keep the pool's counts. */
  attach(backend: PooledBackend): void {
    const data = backend.data;
    const set = data.set.bind(data);
    data.set = (dataId, value) => {
      const buffer = bufferOf(value.values);
      if (buffer && this.owned.has(buffer)) this.users.set(buffer, (this.users.get(buffer) ?? 0) + 1);
      set(dataId, value);
    };
    const readSync = backend.readSync.bind(backend);
    backend.readSync = (dataId) => {
      const buffer = bufferOf(data.get(dataId)?.values);
      if (buffer) this.escaped.add(buffer);
      return readSync(dataId);
    };
    const disposeData = backend.disposeData.bind(backend);
    backend.disposeData = (dataId, force) => {
      const buffer = bufferOf(data.get(dataId)?.values);
      const deleted = disposeData(dataId, force);
      if (buffer && deleted && !data.has(dataId)) this.release(buffer);
      return deleted;
    };
  }

  /** An output array of n elements: recycled (contents undefined) or fresh (zeroed). */
  take(n: number, dtype: DataType): Values {
    const bytes = sizeClass(n * (dtype === 'float32' || dtype === 'int32' ? 4 : 1));
    // best fit: this class, else the next classes up to twice the size (a free buffer that no
    // request of its own class wants would otherwise sit in the pool while we allocate afresh)
    let buffer: ArrayBuffer | undefined;
    for (let c = bytes, k = 0; k <= 8 && !buffer; k++, c = sizeClass(c + 1)) buffer = this.free.get(c)?.pop();
    if (buffer) {
      this.pooledBytes -= buffer.byteLength;
      this.reused++;
    } else {
      buffer = new ArrayBuffer(bytes);
      this.owned.add(buffer);
    }
    // a view of exactly n elements: kernels and the cpu backend see the tensor's size
    return dtype === 'float32' ? new Float32Array(buffer, 0, n) : dtype === 'int32' ? new Int32Array(buffer, 0, n) : new Uint8Array(buffer, 0, n);
  }

  /** Whether `buffer` is this pool's, held by one tensor and never handed to a caller: safe to overwrite in place. */
  isPrivate(buffer: ArrayBuffer): boolean {
    return this.owned.has(buffer) && !this.escaped.has(buffer) && (this.users.get(buffer) ?? 0) === 1;
  }

  /** Bytes waiting in the free lists. */
  get bytes(): number {
    return this.pooledBytes;
  }

  /** Frees every free buffer. */
  clear(): void {
    for (const list of this.free.values()) for (const b of list) freeSoon(b);
    this.free.clear();
    this.pooledBytes = 0;
  }

  private release(buffer: ArrayBuffer): void {
    if (!this.owned.has(buffer)) return;
    const left = (this.users.get(buffer) ?? 1) - 1;
    this.users.set(buffer, left);
    if (left > 0 || this.escaped.has(buffer) || buffer.byteLength === 0) return;
    if (this.pooledBytes + buffer.byteLength > this.maxPooled) {
      this.dropped++;
      freeSoon(buffer);
      return;
    }
    let list = this.free.get(buffer.byteLength);
    if (!list) this.free.set(buffer.byteLength, (list = []));
    list.push(buffer);
    this.pooledBytes += buffer.byteLength;
  }
}

/**
 * Buffers come in size classes, 8 per doubling (at most 12.5% unused), so a freed buffer serves
 * any later request of its class: with exact sizes, the many slightly different shapes of a step
 * (a micro-batch's T varies) each kept their own free list and the pool grew to its cap.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= 64) return 64;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

/**
 * Frees a buffer nothing uses any more without waiting for a major GC: its memory moves to a
 * fresh, unreferenced ArrayBuffer (transfer detaches the old one), which the next scavenge of the
 * young generation frees, typically within milliseconds of allocation-heavy tensor code. A dropped
 * buffer that had lived through a few scavenges sat in the old generation until a full
 * mark-compact, which inflated the peak RSS by gigabytes on a 135M-parameter step. Only for
 * buffers the pool allocated and no tensor, view or reader holds.
 */
function freeSoon(buffer: ArrayBuffer): void {
  structuredClone(buffer, { transfer: [buffer] });
}

function bufferOf(values: unknown): ArrayBuffer | null {
  return ArrayBuffer.isView(values) && values.buffer instanceof ArrayBuffer ? values.buffer : null;
}

const pools = new WeakMap<object, HostPool>();

/** Creates and attaches the pool of a native backend instance. */
export function poolBackend(backend: PooledBackend, maxPooled?: number): HostPool {
  const pool = new HostPool(maxPooled);
  pool.attach(backend);
  pools.set(backend, pool);
  return pool;
}

/** The pool of a backend instance, if it has one. */
export function poolOf(backend: object): HostPool | undefined {
  return pools.get(backend);
}
