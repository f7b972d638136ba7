/**
 * Elementwise float32 kernels (unary and broadcasting binary) on the native addon, multithreaded
 * and vectorised, in place of the wasm backend's single-threaded ones. Other dtypes (int32 index
 * arithmetic, bool) run the stock kernels.
 */
import { tf } from '../tf.js';
import { BinaryOp, UnaryOp, type NativeAddon } from '../native-addon.js';
import type { KernelMemory } from '../tensor-memory.js';
import { sizeOf, stridesOf, type TensorInfo } from '../wasm-heap.js';
import { broadcastShapes, broadcastStrides, packLayout } from './layout.js';
import { replaceKernel, type KernelBackendName } from './registry.js';

const UNARY: Record<string, UnaryOp> = {
  [tf.Neg]: UnaryOp.Neg,
  [tf.Exp]: UnaryOp.Exp,
  [tf.Log]: UnaryOp.Log,
  [tf.Sqrt]: UnaryOp.Sqrt,
  [tf.Rsqrt]: UnaryOp.Rsqrt,
  [tf.Square]: UnaryOp.Square,
  [tf.Sigmoid]: UnaryOp.Sigmoid,
  [tf.Reciprocal]: UnaryOp.Reciprocal,
  [tf.Abs]: UnaryOp.Abs,
  [tf.Relu]: UnaryOp.Relu,
};

const BINARY: Record<string, BinaryOp> = {
  [tf.Add]: BinaryOp.Add,
  [tf.Sub]: BinaryOp.Sub,
  [tf.Multiply]: BinaryOp.Mul,
  [tf.RealDiv]: BinaryOp.Div,
  [tf.Maximum]: BinaryOp.Max,
  [tf.Minimum]: BinaryOp.Min,
  [tf.SquaredDifference]: BinaryOp.SquaredDiff,
};

/** Kernel names this module replaces. */
export const ELEMENTWISE_KERNELS = [...Object.keys(UNARY), ...Object.keys(BINARY)];

export function installElementwiseKernels(addon: NativeAddon, target: KernelBackendName): void {
  for (const [name, op] of Object.entries(UNARY)) {
    replaceKernel(target, name, (args, backend) => {
      const { x } = args.inputs as { x: TensorInfo };
      if (x.dtype !== 'float32') return null;
      const out = backend.makeOutput(x.shape, 'float32');
      const n = sizeOf(x.shape);
      if (n > 0) addon.unary(backend.heap(), op, backend.ref(x), backend.ref(out), n);
      return out;
    });
  }
  for (const [name, op] of Object.entries(BINARY)) {
    replaceKernel(target, name, (args, backend) => {
      const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
      return binary(addon, backend, op, a, b);
    });
  }
}

/** a (op) b with numpy broadcasting into a fresh tensor, or null when not float32. */
export function binary(addon: NativeAddon, backend: KernelMemory, op: BinaryOp, a: TensorInfo, b: TensorInfo): TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  const shape = broadcastShapes(a.shape, b.shape);
  if (shape === null) return null; // let the stock kernel raise its usual error
  const layout = packLayout(shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape));
  if (layout === null) return null;
  const out = backend.makeOutput(shape, 'float32');
  if (sizeOf(shape) > 0) {
    addon.binary(backend.heap(), op, backend.ref(a), backend.ref(b), backend.ref(out), layout);
  }
  return out;
}

/** out += bias in place, bias broadcast to out's shape. False when the shapes do not allow it. */
export function binaryInPlace(addon: NativeAddon, backend: KernelMemory, out: TensorInfo, bias: TensorInfo): boolean {
  const shape = broadcastShapes(out.shape, bias.shape);
  if (shape === null || shape.length !== out.shape.length || shape.some((n, d) => n !== out.shape[d])) return false;
  const layout = packLayout(shape, stridesOf(shape), broadcastStrides(bias.shape, shape));
  if (layout === null) return false;
  const off = backend.ref(out);
  if (sizeOf(shape) > 0) addon.binary(backend.heap(), BinaryOp.Add, off, backend.ref(bias), off, layout);
  return true;
}
