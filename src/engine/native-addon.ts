/**
 * Loads the project's native kernel addon (native/, built by `npm run build:native`) and describes
 * its functions. Every function runs synchronously on tensor memory in place: the first argument
 * is the wasm heap ArrayBuffer (tensors are byte offsets into it) or null (each tensor argument is
 * a typed array, as on the native backend). The addon checks that every region lies inside its
 * buffer and throws a RangeError otherwise.
 *
 * Loading never throws: a missing or broken addon yields `{ addon: null, error }` and the engine
 * falls back to stock kernels with a warning.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TensorRef } from './tensor-memory.js';

/** Op codes of `unary`; the order matches native/src/elementwise.cc. */
export const UnaryOp = {
  Neg: 0,
  Exp: 1,
  Log: 2,
  Sqrt: 3,
  Rsqrt: 4,
  Square: 5,
  Sigmoid: 6,
  Reciprocal: 7,
  Abs: 8,
  Relu: 9,
} as const;
export type UnaryOp = (typeof UnaryOp)[keyof typeof UnaryOp];

/** Op codes of `binary`; the order matches native/src/elementwise.cc. */
export const BinaryOp = { Add: 0, Sub: 1, Mul: 2, Div: 3, Max: 4, Min: 5, SquaredDiff: 6 } as const;
export type BinaryOp = (typeof BinaryOp)[keyof typeof BinaryOp];

/** Op codes of `reduce`; the order matches native/src/reduce.cc. */
export const ReduceOp = { Sum: 0, Mean: 1, Max: 2, Min: 3 } as const;
export type ReduceOp = (typeof ReduceOp)[keyof typeof ReduceOp];

/** Modes of `cast`; the order matches native/src/copy.cc. */
export const CastMode = { Int32ToFloat32: 0, Float32ToInt32: 1, BoolToFloat32: 2, Float32ToBool: 3 } as const;
export type CastMode = (typeof CastMode)[keyof typeof CastMode];

export interface NativeInfo {
  blasConfig: string; // how OpenBLAS was built
  blasCore: string; // the CPU kernels OpenBLAS picked, e.g. "SkylakeX"
  threads: number; // threads our kernels use, the caller included
}

/** Tensor arguments (`...Off`) are byte offsets into `heap`, or typed arrays when heap is null; sizes and strides count elements. */
export interface NativeAddon {
  info(): NativeInfo;
  /** C[i] = op(A[i]) x op(B[i]); A[i] at aOff + 4 * i * aStride (stride 0 broadcasts). C is [batch, M, N]. */
  gemm(
    heap: ArrayBuffer | null,
    aOff: TensorRef,
    bOff: TensorRef,
    cOff: TensorRef,
    batch: number,
    M: number,
    N: number,
    K: number,
    transA: number,
    transB: number,
    aStride: number,
    bStride: number,
  ): void;
  unary(heap: ArrayBuffer | null, op: UnaryOp, xOff: TensorRef, outOff: TensorRef, n: number): void;
  /** layout: [r, shape[r], aStrides[r], bStrides[r]]; out contiguous with `shape`. */
  binary(heap: ArrayBuffer | null, op: BinaryOp, aOff: TensorRef, bOff: TensorRef, outOff: TensorRef, layout: Int32Array): void;
  /** layout: [r, shape[r], srcStrides[r], dstStrides[r]]; elemBytes 1 or 4. */
  copy(heap: ArrayBuffer | null, srcOff: TensorRef, dstOff: TensorRef, elemBytes: number, layout: Int32Array): void;
  /** out[o, j, :] = x[o, idx[j], :], rows of `inner` 4-byte elements. */
  gather(
    heap: ArrayBuffer | null,
    xOff: TensorRef,
    idxOff: TensorRef,
    outOff: TensorRef,
    outer: number,
    axisLen: number,
    inner: number,
    nIdx: number,
  ): void;
  segmentSum(heap: ArrayBuffer | null, xOff: TensorRef, idsOff: TensorRef, outOff: TensorRef, n: number, inner: number, numSegments: number): void;
  cast(heap: ArrayBuffer | null, mode: CastMode, xOff: TensorRef, outOff: TensorRef, n: number): void;
  /** x viewed as [O, R, I]; out [O, I] = op over R. */
  reduce(heap: ArrayBuffer | null, op: ReduceOp, xOff: TensorRef, outOff: TensorRef, O: number, R: number, I: number): void;
  softmax(heap: ArrayBuffer | null, xOff: TensorRef, outOff: TensorRef, rows: number, cols: number): void;
  /** One AdamW update of n elements into pOut, mOut, vOut (see native/src/fused.cc for the formula). */
  adamw(
    heap: ArrayBuffer | null,
    p: TensorRef,
    g: TensorRef,
    m: TensorRef,
    v: TensorRef,
    pOut: TensorRef,
    mOut: TensorRef,
    vOut: TensorRef,
    n: number,
    beta1: number,
    beta2: number,
    eps: number,
    stepSize: number,
    bc2Sqrt: number,
    decay: number,
  ): void;
  /** out [rows, I] = silu(gu[:, :I]) * gu[:, I:], gu [rows, 2I]. */
  swiglu(heap: ArrayBuffer | null, gu: TensorRef, out: TensorRef, rows: number, I: number): void;
  /** dgu [rows, 2I] from gu [rows, 2I] and the upstream gradient dy [rows, I]. */
  swigluGrad(heap: ArrayBuffer | null, gu: TensorRef, dy: TensorRef, dgu: TensorRef, rows: number, I: number): void;
  /** y = x * rsqrt(mean(x^2) + eps) * w over rows of d. */
  rmsNorm(heap: ArrayBuffer | null, x: TensorRef, w: TensorRef, y: TensorRef, rows: number, d: number, eps: number): void;
  /** dx [rows, d] and dw [d] of rmsNorm for upstream dy. */
  rmsNormGrad(heap: ArrayBuffer | null, x: TensorRef, w: TensorRef, dy: TensorRef, dx: TensorRef, dw: TensorRef, rows: number, d: number, eps: number): void;
  /** out = x cos + swap(x) sin over rows of hd (swap: the two halves exchanged); tables repeat every tableStride (0 or inner). */
  rope(heap: ArrayBuffer | null, x: TensorRef, cos: TensorRef, sin: TensorRef, out: TensorRef, B: number, inner: number, hd: number, tableStride: number): void;
  /** dx = dy cos + swap(dy sin), the gradient of rope. */
  ropeGrad(heap: ArrayBuffer | null, dy: TensorRef, cos: TensorRef, sin: TensorRef, dx: TensorRef, B: number, inner: number, hd: number, tableStride: number): void;
}

export interface AddonLoad {
  addon: NativeAddon | null;
  path: string; // where it was looked for
  error?: string; // why it is null
  blasCoreForced?: string; // OPENBLAS_CORETYPE we set before loading (see pickBlasCore)
}

const BUILT = 'native/build/Release/grpo_native.node';

/**
 * The addon file: GRPO_NATIVE_ADDON, else native/build/Release in the nearest ancestor directory
 * that has one. This file runs from src/ (vitest), dist/ (tsc) or dist-bench/src/ (benchmarks),
 * all inside the project root that holds native/.
 */
export function addonPath(): string {
  const override = process.env.GRPO_NATIVE_ADDON;
  if (override) return resolve(override);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = resolve(dir, BUILT);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '../..', BUILT); // where it would be built
}

/**
 * OpenBLAS 0.3.21 does not recognise some newer CPUs (Sapphire Rapids in a VM reports a plain
 * "Intel Xeon Processor") and falls back to its SSE3 "Prescott" kernels, 3-4x slower. When the
 * user has not chosen, name the kernel family from the CPU's feature flags instead.
 */
export function pickBlasCore(cpuinfo: string): string | undefined {
  const line = cpuinfo.split('\n').find((l) => l.startsWith('flags'));
  if (!line) return undefined;
  const flags = new Set(line.split(':')[1]?.trim().split(/\s+/) ?? []);
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((f) => flags.has(f))) return 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

let cached: AddonLoad | null = null;

/** Loads the addon once per process; later calls return the same result. */
export function loadNativeAddon(): AddonLoad {
  if (cached) return cached;
  const path = addonPath();
  if (process.env.GRPO_NATIVE === '0') {
    cached = { addon: null, path, error: 'disabled by GRPO_NATIVE=0' };
    return cached;
  }
  if (!existsSync(path)) {
    cached = { addon: null, path, error: `not built (${path} is missing)` };
    return cached;
  }
  let blasCoreForced: string | undefined;
  if (!process.env.OPENBLAS_CORETYPE && process.platform === 'linux' && process.arch === 'x64') {
    try {
      blasCoreForced = pickBlasCore(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      blasCoreForced = undefined; // no /proc: let OpenBLAS detect the CPU itself
    }
    // read by OpenBLAS when the addon loads it, below
    if (blasCoreForced) process.env.OPENBLAS_CORETYPE = blasCoreForced;
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as NativeAddon;
    cached = { addon, path, blasCoreForced };
  } catch (err) {
    cached = { addon: null, path, error: `failed to load: ${err instanceof Error ? err.message : String(err)}` };
  }
  return cached;
}
