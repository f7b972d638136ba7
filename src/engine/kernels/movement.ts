/**
 * Data-movement kernels on the native strided copy (multithreaded memcpy of the longest
 * contiguous runs): Transpose, Slice, SplitV, Concat, Reverse, Tile, PadV2, plus GatherV2,
 * UnsortedSegmentSum (the gradient of gather) and Cast. The stock wasm versions of Reverse and
 * SplitV were the slowest kernels of a Llama step (element-by-element index arithmetic).
 */
import { tf } from '../tf.js';
import { CastMode, type NativeAddon } from '../native-addon.js';
import type { KernelMemory } from '../tensor-memory.js';
import { elemBytes, sizeOf, stridesOf, type TensorInfo } from '../wasm-heap.js';
import { packLayout } from './layout.js';
import { replaceKernel, type KernelBackendName } from './registry.js';

/** Copies `shape` elements from src (at element offset srcAt, strides srcStrides) into dst. */
function stridedCopy(
  addon: NativeAddon,
  backend: KernelMemory,
  src: TensorInfo,
  srcAt: number,
  srcStrides: number[],
  dst: TensorInfo,
  dstAt: number,
  dstStrides: number[],
  shape: number[],
): boolean {
  if (sizeOf(shape) === 0) return true;
  const eb = elemBytes(src.dtype);
  const layout = packLayout(shape, srcStrides, dstStrides);
  if (layout === null || eb === 0) return false;
  const so = backend.ref(src, srcAt * eb);
  const dOff = backend.ref(dst, dstAt * eb);
  addon.copy(backend.heap(), so, dOff, eb, layout);
  return true;
}

/** Allocates an output and fills it by one strided copy; null (nothing allocated) when unsupported. */
function copyOut(
  addon: NativeAddon,
  backend: KernelMemory,
  x: TensorInfo,
  outShape: number[],
  srcAt: number,
  srcStrides: number[],
): TensorInfo | null {
  if (elemBytes(x.dtype) === 0) return null;
  const out = backend.makeOutput(outShape, x.dtype);
  if (!stridedCopy(addon, backend, x, srcAt, srcStrides, out, 0, stridesOf(outShape), outShape)) {
    backend.disposeData(out.dataId);
    return null;
  }
  return out;
}

/**
 * x[begin : begin + size]: a view of x's memory where the slice is one contiguous run, the
 * backend can share memory (native) and `mayView` allows it, else a copy.
 */
function slice(addon: NativeAddon, backend: KernelMemory, x: TensorInfo, begin: number[], size: number[], mayView: boolean): TensorInfo | null {
  const xs = stridesOf(x.shape);
  const at = begin.reduce((acc, b, d) => acc + b * xs[d], 0);
  if (mayView && isContiguous(x.shape, size) && elemBytes(x.dtype) !== 0) {
    const view = backend.view(x, at, size);
    if (view) return view;
  }
  return copyOut(addon, backend, x, size, at, xs);
}

/** Whether a slice of `size` from a row-major `shape` is one run: size-1 axes, then one partial axis, then whole axes. */
export function isContiguous(shape: readonly number[], size: readonly number[]): boolean {
  let d = 0;
  while (d < shape.length && size[d] === 1) d++;
  for (let e = d + 1; e < shape.length; e++) if (size[e] !== shape[e]) return false;
  return true;
}

const CAST_MODES: Record<string, CastMode> = {
  'int32>float32': CastMode.Int32ToFloat32,
  'float32>int32': CastMode.Float32ToInt32,
  'bool>float32': CastMode.BoolToFloat32,
  'float32>bool': CastMode.Float32ToBool,
};

export function installMovementKernels(addon: NativeAddon, target: KernelBackendName): void {
  replaceKernel(target, tf.Transpose, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { perm } = args.attrs as { perm: number[] };
    // the identity permutation (the gradient of an axis-0 gather asks for one) moves nothing
    if (perm.every((p, d) => p === d) && elemBytes(x.dtype) !== 0) return backend.share(x);
    const xs = stridesOf(x.shape);
    return copyOut(addon, backend, x, perm.map((p) => x.shape[p]), 0, perm.map((p) => xs[p]));
  });

  replaceKernel(target, tf.Slice, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
    const [b, s] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
    // a view only for at least half of x: a small slice must not keep a large buffer alive
    return slice(addon, backend, x, b, s, 2 * sizeOf(s) >= sizeOf(x.shape));
  });

  replaceKernel(target, tf.SplitV, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    if (elemBytes(x.dtype) === 0) return null;
    const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, $axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    const outs: TensorInfo[] = [];
    for (const n of sizes) {
      const size = [...x.shape];
      size[$axis] = n;
      // the parts of a split together cover x, so views of it (where contiguous) pin nothing extra:
      // the gradient of a fused weight concat splits [3072, 576] into row blocks without a copy
      const part = slice(addon, backend, x, [...begin], size, true);
      if (part === null) {
        for (const t of outs) backend.disposeData(t.dataId);
        return null;
      }
      outs.push(part);
      begin[$axis] += n;
    }
    return outs;
  });

  replaceKernel(target, tf.Concat, (args, backend) => {
    const inputs = Object.values(args.inputs) as TensorInfo[];
    const { axis } = args.attrs as { axis: number };
    if (inputs.length === 0 || inputs.some((t) => t.dtype !== inputs[0].dtype) || elemBytes(inputs[0].dtype) === 0) return null;
    const $axis = tf.util.parseAxisParam(axis, inputs[0].shape)[0];
    const outShape = tf.backend_util.computeOutShape(inputs.map((t) => t.shape), $axis);
    const out = backend.makeOutput(outShape, inputs[0].dtype);
    const os = stridesOf(outShape);
    let at = 0;
    for (const t of inputs) {
      if (!stridedCopy(addon, backend, t, 0, stridesOf(t.shape), out, at * os[$axis], os, t.shape)) {
        backend.disposeData(out.dataId);
        return null;
      }
      at += t.shape[$axis];
    }
    return out;
  });

  replaceKernel(target, tf.Reverse, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { dims } = args.attrs as { dims: number | number[] };
    const axes = tf.util.parseAxisParam(dims, x.shape);
    const xs = stridesOf(x.shape);
    let at = 0;
    const src = xs.map((s, d) => {
      if (!axes.includes(d) || x.shape[d] === 0) return s;
      at += (x.shape[d] - 1) * s; // start at the last element and walk backwards
      return -s;
    });
    return copyOut(addon, backend, x, [...x.shape], at, src);
  });

  replaceKernel(target, tf.Tile, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { reps } = args.attrs as { reps: number[] };
    if (elemBytes(x.dtype) === 0 || reps.length !== x.shape.length) return null;
    const outShape = x.shape.map((n, d) => n * reps[d]);
    const out = backend.makeOutput(outShape, x.dtype);
    const xs = stridesOf(x.shape);
    const os = stridesOf(outShape);
    // dimension d of the output is [reps[d], x.shape[d]]: the repeat index does not move the source
    const shape = x.shape.flatMap((n, d) => [reps[d], n]);
    const src = xs.flatMap((s) => [0, s]);
    const dst = os.flatMap((s, d) => [s * x.shape[d], s]);
    if (!stridedCopy(addon, backend, x, 0, src, out, 0, dst, shape)) {
      backend.disposeData(out.dataId);
      return null;
    }
    return out;
  });

  replaceKernel(target, tf.PadV2, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { paddings, constantValue } = args.attrs as { paddings: [number, number][]; constantValue: number };
    if (x.dtype !== 'float32' && x.dtype !== 'int32') return null;
    const outShape = x.shape.map((n, d) => paddings[d][0] + n + paddings[d][1]);
    const out = backend.makeOutput(outShape, x.dtype);
    (x.dtype === 'float32' ? backend.f32(out) : backend.i32(out)).fill(constantValue);
    const os = stridesOf(outShape);
    const at = paddings.reduce((acc, [before], d) => acc + before * os[d], 0);
    stridedCopy(addon, backend, x, 0, stridesOf(x.shape), out, at, os, [...x.shape]);
    return out;
  });

  replaceKernel(target, tf.GatherV2, (args, backend) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (batchDims !== 0 || indices.dtype !== 'int32' || elemBytes(x.dtype) !== 4) return null;
    const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
    const outer = sizeOf(x.shape.slice(0, $axis));
    const inner = sizeOf(x.shape.slice($axis + 1));
    const nIdx = sizeOf(indices.shape);
    const outShape = [...x.shape.slice(0, $axis), ...indices.shape, ...x.shape.slice($axis + 1)];
    const out = backend.makeOutput(outShape, x.dtype);
    if (sizeOf(outShape) === 0) return out;
    try {
      addon.gather(backend.heap(), backend.ref(x), backend.ref(indices), backend.ref(out), outer, x.shape[$axis], inner, nIdx);
    } catch (err) {
      backend.disposeData(out.dataId);
      throw new Error(`GatherV2: indices must lie in [0, ${x.shape[$axis] - 1}]`, { cause: err });
    }
    return out;
  });

  replaceKernel(target, tf.UnsortedSegmentSum, (args, backend) => {
    const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const { numSegments } = args.attrs as { numSegments: number };
    if (x.dtype !== 'float32' || segmentIds.dtype !== 'int32') return null;
    const n = sizeOf(segmentIds.shape);
    const inner = n === 0 ? 0 : sizeOf(x.shape) / n;
    const out = backend.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], 'float32');
    if (n === 0 || inner === 0) {
      backend.f32(out).fill(0);
      return out;
    }
    addon.segmentSum(backend.heap(), backend.ref(x), backend.ref(segmentIds), backend.ref(out), n, inner, numSegments);
    return out;
  });

  replaceKernel(target, tf.Cast, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { dtype } = args.attrs as { dtype: tf.DataType };
    if (dtype === x.dtype && elemBytes(dtype) !== 0) return backend.share(x);
    const mode = CAST_MODES[`${x.dtype}>${dtype}`];
    if (mode === undefined) return null;
    const out = backend.makeOutput([...x.shape], dtype);
    const n = sizeOf(x.shape);
    if (n > 0) addon.cast(backend.heap(), mode, backend.ref(x), backend.ref(out), n);
    return out;
  });
}
