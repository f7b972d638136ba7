/**
 * Reductions (Sum, Mean, Max, Min over any run of adjacent axes) and last-axis Softmax on the
 * native addon. The stock wasm reductions transpose the reduced axes innermost first, a full
 * copy; here x is viewed as [O, R, I] and reduced over R in place. Non-adjacent axes and
 * non-float32 inputs run the stock kernels.
 */
import { tf } from '../tf.js';
import { ReduceOp, type NativeAddon } from '../native-addon.js';
import { sizeOf, type TensorInfo } from '../wasm-heap.js';
import { replaceKernel, type KernelBackendName } from './registry.js';

const REDUCE: Record<string, ReduceOp> = {
  [tf.Sum]: ReduceOp.Sum,
  [tf.Mean]: ReduceOp.Mean,
  [tf.Max]: ReduceOp.Max,
  [tf.Min]: ReduceOp.Min,
};

/**
 * [O, R, I] for reducing `axes` of `shape`, or null when the reduced axes (ignoring size-1 axes)
 * are not adjacent.
 */
export function reductionView(shape: readonly number[], axes: readonly number[]): [number, number, number] | null {
  const reduced = new Set(axes);
  const real = shape.map((n, d) => (n === 1 ? -1 : d)).filter((d) => d >= 0);
  const picked = real.filter((d) => reduced.has(d));
  if (picked.length === 0) return [sizeOf(shape), 1, 1];
  const first = real.indexOf(picked[0]);
  for (let i = 0; i < picked.length; i++) if (real[first + i] !== picked[i]) return null;
  const lo = picked[0];
  const hi = picked[picked.length - 1];
  return [sizeOf(shape.slice(0, lo)), sizeOf(shape.slice(lo, hi + 1)), sizeOf(shape.slice(hi + 1))];
}

export function installReduceKernels(addon: NativeAddon, target: KernelBackendName): void {
  for (const [name, op] of Object.entries(REDUCE)) {
    replaceKernel(target, name, (args, backend) => {
      const { x } = args.inputs as { x: TensorInfo };
      // Max names its axes `reductionIndices`, the others `axis`; null means every axis
      const { axis, reductionIndices, keepDims } = args.attrs as {
        axis?: number | number[] | null;
        reductionIndices?: number | number[] | null;
        keepDims: boolean;
      };
      if (x.dtype !== 'float32') return null;
      const axes = tf.util.parseAxisParam((name === tf.Max ? reductionIndices : axis) as number | number[], x.shape);
      const view = reductionView(x.shape, axes);
      if (view === null || sizeOf(x.shape) === 0) return null;
      const outShape = keepDims ? x.shape.map((n, d) => (axes.includes(d) ? 1 : n)) : x.shape.filter((_, d) => !axes.includes(d));
      const out = backend.makeOutput(outShape, 'float32');
      addon.reduce(backend.heap(), op, backend.ref(x), backend.ref(out), ...view);
      return out;
    });
  }

  replaceKernel(target, tf.Softmax, (args, backend) => {
    const { logits } = args.inputs as { logits: TensorInfo };
    const { dim } = args.attrs as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== 'float32' || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
    const cols = logits.shape[rank - 1];
    const rows = cols === 0 ? 0 : sizeOf(logits.shape) / cols;
    const out = backend.makeOutput([...logits.shape], 'float32');
    if (rows > 0) addon.softmax(backend.heap(), backend.ref(logits), backend.ref(out), rows, cols);
    return out;
  });
}
