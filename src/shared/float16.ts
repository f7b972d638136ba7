/**
 * float32 <-> IEEE half (f16) and bfloat16 (bf16) conversions for weights on the wire.
 * Both narrowings round to nearest, ties to even; NaN stays a (quiet) NaN with its sign,
 * overflow becomes infinity. f16 keeps subnormals (down to 2^-24); bf16 is the top 16 bits of
 * the float32, so it keeps float32's range and subnormals.
 * All functions work on raw bit patterns in Uint16Array/Uint32Array views; the host must be
 * little-endian (checked by the weights codec), which every platform Node supports is.
 */

/** Bits of one float32 (as uint32) -> bits of the nearest f16. */
export function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7f_ffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x0200 : 0); // inf, or quiet NaN
  const e = exp - 127 + 15; // f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: infinity
  if (e <= 0) {
    // f16 subnormal (or zero). value = m * 2^(E-23) with m the 24-bit significand, E = exp-127;
    // in units of the smallest subnormal 2^-24 that is m * 2^(E+1) = m >> (14 - e).
    if (e < -10) return sign; // below half the smallest subnormal (float32 subnormals included)
    const m = mant | 0x80_0000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rem > half || (rem === half && (r & 1) === 1)) r += 1; // may carry into the smallest normal: still right
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r += 1; // a carry may reach 0x7c00 = infinity: right
  return sign | r;
}

/** Bits of one f16 -> the float32 value (exact: every f16 is a float32). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Bits of one float32 -> bits of the nearest bf16. */
export function f32BitsToBf16(b: number): number {
  if ((b & 0x7f80_0000) === 0x7f80_0000 && (b & 0x7f_ffff) !== 0) return ((b >>> 16) & 0x8000) | 0x7fc0; // quiet NaN
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry out of the mantissa
  // bumps the exponent, and from the largest finite value gives infinity, as it should.
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | null = null;

/** All 65,536 f16 values as float32 (256 KiB, built on first use). */
function f16ToF32Table(): Float32Array {
  if (f16Table === null) {
    f16Table = new Float32Array(65_536);
    for (let h = 0; h < 65_536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

export function encodeF16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16(bits[i]);
}

export function decodeF16(src: Uint16Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]];
}

export function encodeBf16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToBf16(bits[i]);
}

export function decodeBf16(src: Uint16Array, dst: Float32Array): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
}
