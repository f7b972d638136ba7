/**
 * Kernels the wasm backend needs even without the native addon, written in plain JS over heap
 * views:
 * - UnsortedSegmentSum: missing from the wasm backend, and it is the gradient of tf.gather
 *   (embedding lookups), so training fails without it.
 * - OneHot: the stock kernel writes int32 bit patterns whatever the requested dtype, so
 *   tf.oneHot(..., 'float32') returns denormal garbage instead of 0/1 (tfjs-backend-wasm 4.22).
 * - Identity and same-dtype Cast: the stock kernels copy; tensors are immutable, so sharing the
 *   data is enough (as the cpu backend does).
 */
import { tf } from '../tf.js';
import { sizeOf, type TensorInfo } from '../wasm-heap.js';
import { replaceKernel, type KernelBackendName } from './registry.js';

export function installPortableKernels(target: KernelBackendName): void {
  replaceKernel(target, tf.Identity, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    return x.dtype === 'string' || x.dtype === 'complex64' ? null : backend.share(x);
  });

  replaceKernel(target, tf.Cast, (args, backend) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { dtype } = args.attrs as { dtype: tf.DataType };
    return dtype === x.dtype && dtype !== 'string' && dtype !== 'complex64' ? backend.share(x) : null;
  });

  replaceKernel(target, tf.OneHot, (args, backend) => {
    const { indices } = args.inputs as { indices: TensorInfo };
    const { dtype, depth, onValue, offValue } = args.attrs as {
      dtype: tf.DataType;
      depth: number;
      onValue: number;
      offValue: number;
    };
    if (indices.dtype !== 'int32' || (dtype !== 'float32' && dtype !== 'int32')) return null;
    const out = backend.makeOutput([...indices.shape, depth], dtype);
    const n = sizeOf(indices.shape);
    const idx = backend.i32(indices);
    const values = dtype === 'float32' ? backend.f32(out) : backend.i32(out);
    values.fill(offValue);
    for (let i = 0; i < n; i++) {
      const j = idx[i];
      if (j >= 0 && j < depth) values[i * depth + j] = onValue;
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
    const src = backend.f32(x);
    const ids = backend.i32(segmentIds);
    const dst = backend.f32(out);
    dst.fill(0);
    for (let i = 0; i < n; i++) {
      const s = ids[i];
      if (s < 0 || s >= numSegments) continue; // dropped, as TensorFlow does
      const o = s * inner;
      const from = i * inner;
      for (let j = 0; j < inner; j++) dst[o + j] += src[from + j];
    }
    return out;
  });
}

/** Kernel names installPortableKernels replaces. */
export const PORTABLE_KERNELS = [tf.Identity, tf.Cast, tf.OneHot, tf.UnsortedSegmentSum];
