/**
 * Strided layouts for the native copy and broadcasting kernels. A layout is the Int32Array
 * [r, shape[r], stridesA[r], stridesB[r]] (element strides) that native/src/copy.cc and
 * elementwise.cc walk. Dimensions of size 1 are dropped and neighbours that are contiguous in
 * both stride sets are merged first, so most walks end up with 1-3 dimensions and long inner runs.
 */
import { stridesOf } from '../wasm-heap.js';

/** The addon walks at most this many dimensions. */
export const MAX_LAYOUT_RANK = 8;

// One buffer reused by every call: the native side reads it synchronously before returning.
const scratch = new Int32Array(1 + 3 * MAX_LAYOUT_RANK);

/**
 * Collapses (shape, sa, sb) and writes it to the shared scratch layout. Returns null when the
 * result still has more than MAX_LAYOUT_RANK dimensions (the caller falls back to stock kernels).
 * An empty shape (a scalar) becomes one dimension of size 1.
 */
export function packLayout(shape: readonly number[], sa: readonly number[], sb: readonly number[]): Int32Array | null {
  const dims: number[] = [];
  const as: number[] = [];
  const bs: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && as[last] === sa[d] * shape[d] && bs[last] === sb[d] * shape[d]) {
      dims[last] *= shape[d];
      as[last] = sa[d];
      bs[last] = sb[d];
    } else {
      dims.push(shape[d]);
      as.push(sa[d]);
      bs.push(sb[d]);
    }
  }
  if (dims.length === 0) {
    dims.push(1);
    as.push(1);
    bs.push(1);
  }
  const r = dims.length;
  if (r > MAX_LAYOUT_RANK) return null;
  scratch[0] = r;
  for (let d = 0; d < r; d++) {
    scratch[1 + d] = dims[d];
    scratch[1 + r + d] = as[d];
    scratch[1 + 2 * r + d] = bs[d];
  }
  return scratch;
}

/** Strides of `shape` read as broadcast to `outShape` (right-aligned; 0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = stridesOf(shape);
  const pad = outShape.length - shape.length;
  return outShape.map((n, d) => {
    const i = d - pad;
    if (i < 0 || shape[i] === 1) return 0;
    return own[i];
  });
}

/** Numpy broadcasting of two shapes, or null when they do not broadcast. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | null {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let d = 0; d < r; d++) {
    const x = a[d - (r - a.length)] ?? 1;
    const y = b[d - (r - b.length)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out[d] = x === 1 ? y : x;
  }
  return out;
}
