/**
 * The few facts about @tensorflow/tfjs-backend-wasm's internals that our kernels rely on: a
 * tensor's data lives in the module's linear memory at `dataIdMap.get(dataId).memoryOffset`, and
 * `makeOutput(shape, dtype)` allocates a fresh output there. The heap ArrayBuffer is replaced when
 * the memory grows (every allocation may grow it), so it is read again after each makeOutput,
 * never cached across allocations.
 */
import type { tf } from './tf.js';

export type TensorInfo = tf.TensorInfo;
export type DataType = tf.DataType;

/** The parts of BackendWasm that kernels use. */
export interface WasmBackend {
  wasm: { HEAPU8: Uint8Array; HEAPF32: Float32Array; HEAP32: Int32Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number; refCount: number } | undefined };
  makeOutput(shape: number[], dtype: DataType, memoryOffset?: number): TensorInfo;
  incRef(dataId: object): void;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Whether `backend` looks like the wasm backend this module knows (checked once at install). */
export function isWasmBackend(backend: unknown): backend is WasmBackend {
  const b = backend as Partial<WasmBackend> | null;
  return (
    b !== null &&
    typeof b === 'object' &&
    typeof b.makeOutput === 'function' &&
    typeof b.incRef === 'function' &&
    typeof b.dataIdMap?.get === 'function' &&
    b.wasm?.HEAPU8 instanceof Uint8Array
  );
}

/** Byte offset of a tensor's data in the heap. */
export function offsetOf(backend: WasmBackend, t: TensorInfo): number {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) throw new Error(`tensor data ${JSON.stringify(t.dataId)} is not on the wasm backend`);
  return data.memoryOffset;
}

/** The current heap buffer (read after allocating outputs). */
export function heapOf(backend: WasmBackend): ArrayBuffer {
  return backend.wasm.HEAPU8.buffer as ArrayBuffer;
}

/** A Float32Array view of a float32 tensor's data (valid until the next allocation). */
export function f32View(backend: WasmBackend, t: TensorInfo): Float32Array {
  return new Float32Array(heapOf(backend), offsetOf(backend, t), sizeOf(t.shape));
}

/** An Int32Array view of an int32 tensor's data (valid until the next allocation). */
export function i32View(backend: WasmBackend, t: TensorInfo): Int32Array {
  return new Int32Array(heapOf(backend), offsetOf(backend, t), sizeOf(t.shape));
}

/** A tensor sharing x's data (no copy): tensors are immutable, so shared storage is safe. */
export function shareData(backend: WasmBackend, x: TensorInfo, shape: number[] = x.shape, dtype: DataType = x.dtype): TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape, dtype };
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major element strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** Bytes per element of the dtypes our kernels move (complex64 and string are not handled). */
export function elemBytes(dtype: DataType): 1 | 4 | 0 {
  if (dtype === 'float32' || dtype === 'int32') return 4;
  if (dtype === 'bool') return 1;
  return 0;
}
