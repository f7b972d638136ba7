import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBf16, decodeF16, encodeBf16, encodeF16, f16BitsToF32, f32BitsToBf16, f32BitsToF16 } from '../../src/shared/float16.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number): number => {
  f32[0] = x;
  return u32[0];
};
const valueOf = (bits: number): number => {
  u32[0] = bits >>> 0;
  return f32[0];
};
const bf16Value = (h: number): number => valueOf(h << 16);

/**
 * Independent check of round-to-nearest-even: `pick` is right when no other representable value
 * is closer, and on a tie its last bit is even. Neighbours are the adjacent bit patterns (same sign).
 */
function isNearestEven(x: number, pick: number, decode: (h: number) => number, maxFinite: number): boolean {
  const v = decode(pick);
  const mag = pick & 0x7fff;
  const sign = pick & 0x8000;
  if (Math.abs(x) > maxFinite) {
    // Past the largest finite value: infinity unless x rounds down to maxFinite.
    return Number.isFinite(v) ? Math.abs(v) === maxFinite : true;
  }
  const err = Math.abs(x - v);
  for (const n of [mag - 1, mag + 1]) {
    if (n < 0) continue;
    const w = decode(sign | n);
    if (!Number.isFinite(w)) continue;
    const e = Math.abs(x - w);
    if (e < err) return false;
    if (e === err && (mag & 1) === 1) return false; // tie must go to the even pattern
  }
  return true;
}

const F16_MAX = 65504;
const BF16_MAX = bf16Value(0x7f7f);

describe('f16', () => {
  it('decodes every pattern and re-encodes it to itself (NaNs to a quiet NaN)', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65_536; h++) {
      const v = f16BitsToF32(h);
      const back = f32BitsToF16(bitsOf(v));
      const ok = Number.isNaN(v) ? Number.isNaN(f16BitsToF32(back)) : back === h; // a JS NaN carries no sign
      if (!ok) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('keeps subnormals, overflows to infinity and rounds ties to even', () => {
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f32BitsToF16(bitsOf(2 ** -24))).toBe(0x0001);
    expect(f32BitsToF16(bitsOf(2 ** -25))).toBe(0x0000); // tie between 0 and 2^-24: even (0)
    expect(f32BitsToF16(bitsOf(3 * 2 ** -25))).toBe(0x0002); // tie between 1 and 2 ulp: even (2)
    expect(f32BitsToF16(bitsOf(2 ** -25 * 1.0001))).toBe(0x0001);
    expect(f32BitsToF16(bitsOf(-(2 ** -26)))).toBe(0x8000);
    expect(f32BitsToF16(bitsOf(65504))).toBe(0x7bff);
    expect(f32BitsToF16(bitsOf(65519.99))).toBe(0x7bff);
    expect(f32BitsToF16(bitsOf(65520))).toBe(0x7c00); // tie with the next binade rounds to infinity
    expect(f32BitsToF16(bitsOf(1e9))).toBe(0x7c00);
    expect(f32BitsToF16(bitsOf(-Infinity))).toBe(0xfc00);
    expect(f32BitsToF16(bitsOf(1 + 2 ** -11))).toBe(0x3c00); // tie: even mantissa 0
    expect(f32BitsToF16(bitsOf(1 + 3 * 2 ** -11))).toBe(0x3c02); // tie: even mantissa 2
    expect(f32BitsToF16(bitsOf(1e-45))).toBe(0x0000); // float32 subnormal
    expect(f32BitsToF16(0xffc0_0000)).toBe(0xfe00); // NaN keeps its sign, becomes quiet
    expect(f32BitsToF16(0x7f80_0001)).toBe(0x7e00); // signalling NaN payload lost in the low bits: still NaN
  });

  it('picks the nearest f16, ties to even, for any float32', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (bits) => {
        const x = valueOf(bits);
        const h = f32BitsToF16(bits);
        if (Number.isNaN(x)) return Number.isNaN(f16BitsToF32(h));
        if ((h & 0x8000) !== (bits >>> 31) << 15) return false;
        return isNearestEven(x, h, f16BitsToF32, F16_MAX);
      }),
      { seed: 42, numRuns: 20_000 },
    );
  });

  it('converts arrays both ways', () => {
    const src = Float32Array.of(0, -0, 1.5, -2.25, 65504, 1e-7, Infinity);
    const half = new Uint16Array(src.length);
    encodeF16(src, half);
    const back = new Float32Array(src.length);
    decodeF16(half, back);
    expect([...back.slice(0, 5)]).toEqual([0, -0, 1.5, -2.25, 65504]);
    expect(back[5]).toBe(2 * 2 ** -24); // nearest subnormal: 1e-7 / 2^-24 = 1.68 ulp
    expect(back[6]).toBe(Infinity);
  });
});

describe('bf16', () => {
  it('is the top half of the float32 when exact, and rounds ties to even', () => {
    expect(f32BitsToBf16(bitsOf(1))).toBe(0x3f80);
    expect(f32BitsToBf16(bitsOf(-2))).toBe(0xc000);
    expect(f32BitsToBf16(0x3f80_8000)).toBe(0x3f80); // tie, even stays
    expect(f32BitsToBf16(0x3f81_8000)).toBe(0x3f82); // tie, odd rounds up
    expect(f32BitsToBf16(0x3f80_8001)).toBe(0x3f81);
    expect(f32BitsToBf16(0x7f7f_ffff)).toBe(0x7f80); // max float32 rounds to infinity
    expect(f32BitsToBf16(0x0000_0001)).toBe(0x0000); // tiny subnormal
    expect(f32BitsToBf16(0x7fc0_0001) & 0x7fc0).toBe(0x7fc0);
    expect(f32BitsToBf16(0x7f80_0001) & 0x7fff).toBe(0x7fc0); // signalling NaN stays NaN (quiet)
    expect(f32BitsToBf16(0xff80_0000)).toBe(0xff80);
  });

  it('picks the nearest bf16, ties to even, for any float32', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (bits) => {
        const x = valueOf(bits);
        const h = f32BitsToBf16(bits);
        if (Number.isNaN(x)) return Number.isNaN(bf16Value(h));
        return isNearestEven(x, h, bf16Value, BF16_MAX);
      }),
      { seed: 7, numRuns: 20_000 },
    );
  });

  it('converts arrays both ways', () => {
    const src = Float32Array.of(1, -3.5, 1e30, 1e-30);
    const half = new Uint16Array(src.length);
    encodeBf16(src, half);
    const back = new Float32Array(src.length);
    decodeBf16(half, back);
    expect([...back.slice(0, 2)]).toEqual([1, -3.5]);
    expect(back[2] / 1e30).toBeCloseTo(1, 2);
    expect(back[3] / 1e-30).toBeCloseTo(1, 2);
  });
});
