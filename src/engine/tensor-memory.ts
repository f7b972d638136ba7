/**
 * Where a tensor's bytes live, as the native kernels see them. Two backends run our kernels:
 * - wasm: every tensor sits in the module's 32-bit linear memory (at most 4 GB for all tensors
 *   together); a tensor is a byte offset into that heap (see wasm-heap.ts);
 * - native: a backend of our own (native-backend.ts), the stock cpu backend's storage, where each
 *   tensor owns a typed array in ordinary process memory, so only the machine's RAM bounds a model.
 * A kernel asks a KernelMemory for its inputs' references (offset or typed array), allocates
 * outputs through it and passes `heap()` (the ArrayBuffer, or null) first to the addon, which
 * accepts either form per tensor argument (native/src/napi-util.h).
 */
import { poolOf, type HostPool } from './host-pool.js';
import type { tf } from './tf.js';
import { isWasmBackend, offsetOf, sizeOf, type DataType, type TensorInfo, type WasmBackend } from './wasm-heap.js';

/** A tensor argument of the addon: a byte offset into the heap, or a typed array of its own. */
export type TensorRef = number | ArrayBufferView;

export interface KernelMemory {
  /** The wasm heap (read again after each allocation: growing it replaces the buffer), or null. */
  heap(): ArrayBuffer | null;
  /** Reference to t's data, `byteOffset` bytes past its first element. */
  ref(t: TensorInfo, byteOffset?: number): TensorRef;
  /** A fresh output tensor; its contents are undefined (kernels write every element). */
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: object): void;
  /** Views of a tensor's data (valid until the next allocation on wasm). */
  f32(t: TensorInfo): Float32Array;
  i32(t: TensorInfo): Int32Array;
  /** A tensor sharing x's data (tensors are immutable, so sharing is safe). */
  share(x: TensorInfo, shape?: number[], dtype?: DataType): TensorInfo;
  /**
   * Whether t is the only holder of its data and no caller can see that memory, so a kernel may
   * overwrite it in place (the caller then replaces t by the result, as AdamW assigns a variable).
   */
  exclusive(t: TensorInfo): boolean;
  /**
   * A tensor of `shape` viewing x's data from element `at` on, sharing x's memory (no copy), or
   * null where the backend cannot (wasm: one heap allocation per tensor). Tensors are immutable, so
   * the view is safe; it keeps x's whole buffer alive while it lives.
   */
  view(x: TensorInfo, at: number, shape: number[]): TensorInfo | null;
}

class WasmMemory implements KernelMemory {
  constructor(private readonly b: WasmBackend) {}
  heap(): ArrayBuffer {
    return this.b.wasm.HEAPU8.buffer as ArrayBuffer;
  }
  ref(t: TensorInfo, byteOffset = 0): number {
    return offsetOf(this.b, t) + byteOffset;
  }
  makeOutput(shape: number[], dtype: DataType): TensorInfo {
    return this.b.makeOutput(shape, dtype);
  }
  disposeData(dataId: object): void {
    this.b.disposeData(dataId);
  }
  f32(t: TensorInfo): Float32Array {
    return new Float32Array(this.heap(), offsetOf(this.b, t), sizeOf(t.shape));
  }
  i32(t: TensorInfo): Int32Array {
    return new Int32Array(this.heap(), offsetOf(this.b, t), sizeOf(t.shape));
  }
  share(x: TensorInfo, shape: number[] = x.shape, dtype: DataType = x.dtype): TensorInfo {
    this.b.incRef(x.dataId);
    return { dataId: x.dataId, shape, dtype };
  }
  exclusive(t: TensorInfo): boolean {
    // readSync copies out of the heap, so no caller holds heap memory: the reference count decides
    return this.b.dataIdMap.get(t.dataId)?.refCount === 1;
  }
  view(): null {
    return null;
  }
}

/** The parts of tfjs's MathBackendCPU that kernels use. */
export interface CpuLikeBackend {
  data: { get(dataId: object): { values?: unknown; refCount?: number } | undefined };
  makeTensorInfo(shape: number[], dtype: DataType, values?: unknown): TensorInfo;
  incRef(dataId: object): void;
  disposeData(dataId: object, force?: boolean): boolean;
}

function isCpuLike(backend: unknown): backend is CpuLikeBackend {
  const b = backend as Partial<CpuLikeBackend> | null;
  return b !== null && typeof b === 'object' && typeof b.makeTensorInfo === 'function' && typeof b.data?.get === 'function';
}

class HostMemory implements KernelMemory {
  private readonly pool: HostPool | undefined;
  constructor(private readonly b: CpuLikeBackend) {
    this.pool = poolOf(b);
  }
  heap(): null {
    return null;
  }
  /**
   * t's typed array, of the type its dtype implies. The cpu kernels do not always store that type
   * (OneHot keeps an int32 tensor in a Float32Array; the cpu backend reads values by number), so a
   * mismatched array is converted by value once and stored back in place of the old one.
   */
  private values(t: TensorInfo): ArrayBufferView {
    const entry = this.b.data.get(t.dataId);
    const v = entry?.values;
    if (!entry || !ArrayBuffer.isView(v)) throw new Error(`tensor data ${JSON.stringify(t.dataId)} has no typed array on this backend`);
    const want = t.dtype === 'float32' ? Float32Array : t.dtype === 'int32' ? Int32Array : t.dtype === 'bool' ? Uint8Array : null;
    if (want === null || v instanceof want) return v;
    const converted = want.from(v as unknown as ArrayLike<number>);
    entry.values = converted;
    return converted;
  }
  ref(t: TensorInfo, byteOffset = 0): ArrayBufferView {
    const v = this.values(t);
    return byteOffset === 0 ? v : new Uint8Array(v.buffer, v.byteOffset + byteOffset);
  }
  makeOutput(shape: number[], dtype: DataType): TensorInfo {
    const n = sizeOf(shape);
    if (this.pool) return this.b.makeTensorInfo(shape, dtype, this.pool.take(n, dtype));
    const values = dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n);
    return this.b.makeTensorInfo(shape, dtype, values);
  }
  disposeData(dataId: object): void {
    this.b.disposeData(dataId);
  }
  f32(t: TensorInfo): Float32Array {
    const v = this.values(t);
    return new Float32Array(v.buffer, v.byteOffset, sizeOf(t.shape));
  }
  i32(t: TensorInfo): Int32Array {
    const v = this.values(t);
    return new Int32Array(v.buffer, v.byteOffset, sizeOf(t.shape));
  }
  share(x: TensorInfo, shape: number[] = x.shape, dtype: DataType = x.dtype): TensorInfo {
    this.b.incRef(x.dataId);
    return { dataId: x.dataId, shape, dtype };
  }
  exclusive(t: TensorInfo): boolean {
    // one tensor, in a buffer of the pool's that no other tensor views and no caller has read
    const entry = this.b.data.get(t.dataId);
    const v = entry?.values;
    return entry?.refCount === 1 && ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer && this.pool?.isPrivate(v.buffer) === true;
  }
  view(x: TensorInfo, at: number, shape: number[]): TensorInfo | null {
    const v = this.values(x) as Float32Array | Int32Array | Uint8Array;
    // stored through the backend's data.set, so the pool counts the view as a user of the buffer
    return this.b.makeTensorInfo(shape, x.dtype, v.subarray(at, at + sizeOf(shape)));
  }
}

const cache = new WeakMap<object, KernelMemory>();

/** The KernelMemory of a backend instance (wasm or cpu-like), made once per instance. */
export function memoryOf(backend: tf.KernelBackend | unknown): KernelMemory {
  const key = backend as object;
  let mem = cache.get(key);
  if (mem) return mem;
  if (isWasmBackend(backend)) mem = new WasmMemory(backend);
  else if (isCpuLike(backend)) mem = new HostMemory(backend);
  else throw new Error('native kernels run on the wasm or native backend only');
  cache.set(key, mem);
  return mem;
}
