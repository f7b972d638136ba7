/**
 * BatchMatMul and _FusedMatMul on the native OpenBLAS GEMM, reading and writing the wasm heap in
 * place. Covers every transpose combination and batched operands of any rank; batch dimensions
 * broadcast like numpy (a size-1 dimension repeats). The common cases (equal batches, or one
 * operand shared by all batches) are one native call; other broadcasts loop over output batches.
 */
import { tf } from '../tf.js';
import { UnaryOp, type NativeAddon } from '../native-addon.js';
import type { KernelMemory } from '../tensor-memory.js';
import { sizeOf, stridesOf, type TensorInfo } from '../wasm-heap.js';
import { binaryInPlace } from './elementwise.js';
import { broadcastShapes, broadcastStrides } from './layout.js';
import { replaceKernel, type KernelArgs, type KernelBackendName } from './registry.js';

/** op(a) x op(b) into a fresh [...batch, M, N] tensor, or null for non-float32 inputs. */
export function nativeMatMul(
  addon: NativeAddon,
  backend: KernelMemory,
  a: TensorInfo,
  b: TensorInfo,
  transA: boolean,
  transB: boolean,
): TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  const ar = a.shape.length;
  const br = b.shape.length;
  const M = transA ? a.shape[ar - 1] : a.shape[ar - 2];
  const Ka = transA ? a.shape[ar - 2] : a.shape[ar - 1];
  const Kb = transB ? b.shape[br - 1] : b.shape[br - 2];
  const N = transB ? b.shape[br - 2] : b.shape[br - 1];
  if (Ka !== Kb) {
    throw new Error(
      `Error in matMul: inner shapes (${Ka}) and (${Kb}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
        `and transposeA=${transA} and transposeB=${transB} must match.`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outer = broadcastShapes(outerA, outerB);
  if (outer === null) throw new Error(`matMul: batch dimensions [${outerA}] and [${outerB}] do not broadcast`);
  const batch = sizeOf(outer);
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  const out = backend.makeOutput([...outer, M, N], 'float32');
  if (batch === 0 || M === 0 || N === 0) return out;
  const heap = backend.heap();
  const aOff = backend.ref(a);
  const bOff = backend.ref(b);
  const cOff = backend.ref(out);
  const tA = transA ? 1 : 0;
  const tB = transB ? 1 : 0;
  if ((batchA === batch || batchA === 1) && (batchB === batch || batchB === 1)) {
    const sA = batchA === 1 ? 0 : M * Ka;
    const sB = batchB === 1 ? 0 : Ka * N;
    addon.gemm(heap, aOff, bOff, cOff, batch, M, N, Ka, tA, tB, sA, sB);
    return out;
  }
  // general broadcast, e.g. [2, 1, M, K] x [1, 3, K, N]: one GEMM per output batch
  const outStrides = stridesOf(outer);
  const aStrides = batchStrides(outerA, outer);
  const bStrides = batchStrides(outerB, outer);
  for (let i = 0; i < batch; i++) {
    let ia = 0;
    let ib = 0;
    let rest = i;
    for (let d = 0; d < outer.length; d++) {
      const idx = Math.floor(rest / outStrides[d]);
      rest -= idx * outStrides[d];
      ia += idx * aStrides[d];
      ib += idx * bStrides[d];
    }
    addon.gemm(heap, backend.ref(a, 4 * ia * M * Ka), backend.ref(b, 4 * ib * Ka * N), backend.ref(out, 4 * i * M * N), 1, M, N, Ka, tA, tB, 0, 0);
  }
  return out;
}

/** Matrix-index strides of an operand's batch dims, right-aligned to the output's (0 = broadcast). */
function batchStrides(shape: number[], outer: number[]): number[] {
  const own = stridesOf(shape);
  const pad = outer.length - shape.length;
  return outer.map((_, d) => (d < pad || shape[d - pad] === 1 ? 0 : own[d - pad]));
}

export function installMatMulKernels(addon: NativeAddon, target: KernelBackendName): void {
  replaceKernel(target, tf.BatchMatMul, (args, backend) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    return nativeMatMul(addon, backend, a, b, transposeA, transposeB);
  });
  replaceKernel(target, tf._FusedMatMul, (args, backend) => fusedMatMul(addon, args, backend));
}

/**
 * GEMM, then bias (broadcast to the [batch, M, N] output) and the activation, in place. relu and
 * sigmoid run natively; the rarer elu, relu6, leakyrelu and prelu in JS over the heap view (the
 * stock wasm kernel is not a safe fallback: it returned wrong values for batched elu).
 */
function fusedMatMul(addon: NativeAddon, args: KernelArgs, backend: KernelMemory): TensorInfo | null {
  const { a, b, bias, preluActivationWeights: alphas } = args.inputs as Record<string, TensorInfo | undefined>;
  const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as {
    transposeA: boolean;
    transposeB: boolean;
    activation: string;
    leakyreluAlpha?: number;
  };
  if (!a || !b || (bias && bias.dtype !== 'float32') || (alphas && alphas.dtype !== 'float32')) return null;
  if (!['linear', 'relu', 'sigmoid', 'elu', 'relu6', 'leakyrelu', 'prelu'].includes(activation)) return null;
  if (activation === 'prelu' && !alphas) return null;
  const out = nativeMatMul(addon, backend, a, b, transposeA, transposeB);
  if (out === null) return null;
  if (bias && !binaryInPlace(addon, backend, out, bias)) {
    backend.disposeData(out.dataId);
    return null;
  }
  const n = sizeOf(out.shape);
  if (n === 0) return out;
  const off = backend.ref(out);
  if (activation === 'relu' || activation === 'sigmoid') {
    addon.unary(backend.heap(), activation === 'relu' ? UnaryOp.Relu : UnaryOp.Sigmoid, off, off, n);
    return out;
  }
  const y = backend.f32(out);
  if (activation === 'elu') {
    for (let i = 0; i < n; i++) if (y[i] < 0) y[i] = Math.expm1(y[i]);
  } else if (activation === 'relu6') {
    for (let i = 0; i < n; i++) y[i] = Math.min(Math.max(y[i], 0), 6);
  } else if (activation === 'leakyrelu') {
    const alpha = leakyreluAlpha ?? 0.2;
    for (let i = 0; i < n; i++) if (y[i] < 0) y[i] *= alpha;
  } else if (activation === 'prelu' && alphas) {
    if (!preluInPlace(backend, out, alphas)) {
      backend.disposeData(out.dataId);
      return null;
    }
  }
  return out;
}

/** y = y < 0 ? alpha * y : y, alpha broadcast to y's shape; false when it does not broadcast. */
function preluInPlace(backend: KernelMemory, out: TensorInfo, alphas: TensorInfo): boolean {
  const shape = broadcastShapes(out.shape, alphas.shape);
  if (shape === null || shape.length !== out.shape.length || shape.some((d, i) => d !== out.shape[i])) return false;
  const y = backend.f32(out);
  const w = backend.f32(alphas);
  const ws = broadcastStrides(alphas.shape, out.shape);
  const os = stridesOf(out.shape);
  for (let i = 0; i < y.length; i++) {
    if (y[i] >= 0) continue;
    let wi = 0;
    let rest = i;
    for (let d = 0; d < os.length; d++) {
      const idx = Math.floor(rest / os[d]);
      rest -= idx * os[d];
      wi += idx * ws[d];
    }
    y[i] *= w[wi];
  }
  return true;
}
