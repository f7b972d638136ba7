/**
 * The addon's contract below the kernels: it refuses regions outside the wasm heap instead of
 * corrupting memory, and the TS helpers that shape its arguments (layout collapsing, reduction
 * views, OpenBLAS core choice) do what the kernels assume.
 */
import { describe, expect, it } from 'vitest';
import { packLayout, broadcastShapes, broadcastStrides } from '../../src/engine/kernels/layout.js';
import { reductionView } from '../../src/engine/kernels/reduce.js';
import { BinaryOp, UnaryOp, loadNativeAddon, pickBlasCore } from '../../src/engine/native-addon.js';

const load = loadNativeAddon();

/** The used part of a packed layout: [r, shape[r], stridesA[r], stridesB[r]]. */
function used(layout: Int32Array | null): number[] {
  return layout === null ? [] : Array.from(layout.subarray(0, 1 + 3 * layout[0]));
}

describe('native argument helpers', () => {
  it('collapses contiguous and broadcast dimensions and drops size-1 ones', () => {
    expect(used(packLayout([2, 3, 4], [12, 4, 1], [12, 4, 1]))).toEqual([1, 24, 1, 1]);
    // [7, 1] x [1, 13] broadcast to [7, 13]
    expect(used(packLayout([7, 13], broadcastStrides([7, 1], [7, 13]), broadcastStrides([1, 13], [7, 13])))).toEqual([2, 7, 13, 1, 0, 0, 1]);
    // a transpose keeps its dimensions apart; the size-1 dimension disappears
    expect(used(packLayout([3, 1, 2], [1, 6, 3], [2, 2, 1]))).toEqual([2, 3, 2, 1, 3, 2, 1]);
    expect(used(packLayout([], [], []))).toEqual([1, 1, 1, 1]);
    // nine dimensions that cannot merge (a full reversal of axes) exceed what the addon walks
    const shape = new Array<number>(9).fill(2);
    const natural = shape.map((_, d) => 2 ** (8 - d));
    expect(packLayout(shape, [...natural].reverse(), natural)).toBeNull();
  });

  it('broadcasts shapes like numpy', () => {
    expect(broadcastShapes([3, 1, 5], [4, 1])).toEqual([3, 4, 5]);
    expect(broadcastShapes([], [2])).toEqual([2]);
    expect(broadcastShapes([3], [4])).toBeNull();
  });

  it('views a reduction over adjacent axes as [O, R, I] and refuses split axes', () => {
    expect(reductionView([7, 13, 5], [1])).toEqual([7, 13, 5]);
    expect(reductionView([7, 13, 5], [0, 1])).toEqual([1, 91, 5]);
    expect(reductionView([7, 1, 5], [0, 2])).toEqual([1, 35, 1]); // the size-1 axis between does not split them
    expect(reductionView([7, 13, 5], [0, 2])).toBeNull();
    expect(reductionView([7, 13], [])).toEqual([91, 1, 1]);
  });

  it('names OpenBLAS kernels from CPU feature flags', () => {
    expect(pickBlasCore('processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512bw avx512vl\n')).toBe('SkylakeX');
    expect(pickBlasCore('flags\t\t: fpu sse2 avx avx2 fma\n')).toBe('Haswell');
    expect(pickBlasCore('flags\t\t: fpu sse2\n')).toBeUndefined();
    expect(pickBlasCore('no flags here')).toBeUndefined();
  });
});

describe.skipIf(load.addon === null)(`native addon bounds checks${load.addon ? '' : ` (skipped: addon ${load.error})`}`, () => {
  const addon = load.addon!;
  const heap = new ArrayBuffer(1024);

  it('reports its build and threads', () => {
    const info = addon.info();
    expect(info.blasConfig).toMatch(/OpenBLAS/);
    expect(info.threads).toBeGreaterThanOrEqual(1);
  });

  it('computes into the heap it is given', () => {
    const f = new Float32Array(heap);
    f.set([1, 2, 3, 4], 0); // A [2, 2]
    f.set([5, 6, 7, 8], 4); // B [2, 2]
    addon.gemm(heap, 0, 16, 32, 1, 2, 2, 2, 0, 0, 0, 0);
    expect(Array.from(f.subarray(8, 12))).toEqual([19, 22, 43, 50]);
  });

  it('throws RangeError for regions outside the heap or misaligned', () => {
    expect(() => addon.gemm(heap, 0, 16, 1020, 1, 2, 2, 2, 0, 0, 0, 0)).toThrow(RangeError);
    expect(() => addon.gemm(heap, 2, 16, 32, 1, 2, 2, 2, 0, 0, 0, 0)).toThrow(/misaligned/);
    expect(() => addon.unary(heap, 0, 0, 0, 257)).toThrow(/outside its buffer/);
    const layout = Int32Array.from([1, 300, 1, 1]);
    expect(() => addon.binary(heap, BinaryOp.Add, 0, 0, 0, layout)).toThrow(/outside its buffer/);
    expect(() => addon.copy(heap, 0, 0, 4, Int32Array.from([1, 4, -1, 1]))).toThrow(/outside its buffer/);
    expect(() => addon.copy(heap, 0, 0, 4, Int32Array.from([9]))).toThrow(/layout/);
    expect(() => addon.gemm(new ArrayBuffer(8) as never, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)).not.toThrow();
    expect(() => (addon.gemm as (...a: unknown[]) => void)('not a heap', 0)).toThrow(/ArrayBuffer/);
  });

  it('takes typed arrays in place of heap offsets when the heap is null (the native backend)', () => {
    const a = Float32Array.from([1, 2, 3, 4]);
    const b = Float32Array.from([5, 6, 7, 8]);
    const c = new Float32Array(4);
    addon.gemm(null, a, b, c, 1, 2, 2, 2, 0, 0, 0, 0);
    expect(Array.from(c)).toEqual([19, 22, 43, 50]);
    // a view starting at element 2 of a larger buffer: the tensor starts there
    const big = new Float32Array(8);
    addon.unary(null, UnaryOp.Neg, a, big.subarray(2), 4);
    expect(Array.from(big)).toEqual([0, 0, -1, -2, -3, -4, 0, 0]);
  });

  it('bounds typed-array regions by their buffer and refuses offsets without a heap', () => {
    const small = new Float32Array(4);
    expect(() => addon.unary(null, UnaryOp.Neg, small, small, 5)).toThrow(/outside its buffer/);
    expect(() => addon.gemm(null, small, small, small, 1, 2, 2, 3, 0, 0, 0, 0)).toThrow(RangeError);
    expect(() => addon.unary(null, UnaryOp.Neg, 0, small, 1)).toThrow(/needs the heap/);
    // a reversed walk may not step before the buffer's first element
    expect(() => addon.copy(null, small, small, 4, Int32Array.from([1, 4, -1, 1]))).toThrow(/outside its buffer/);
  });
});
