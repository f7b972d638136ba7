// Vectorisation helpers. Hot loops are plain C++ that GCC auto-vectorises; GRPO_CLONES compiles
// each such function for AVX-512, AVX2 and baseline x86-64 and picks one at load time (ifunc),
// so one binary runs on any x86-64 machine and uses the widest vectors it has. The clones name
// instruction-set features, not CPU models ("arch=skylake-avx512"): a model check fails on CPUs
// newer than the compiler or reported generically by a VM, and would silently pick baseline.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GRPO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GRPO_CLONES
#endif

// Helpers called from GRPO_CLONES loops: forced inline, because GCC will not inline a function
// built for baseline x86-64 into an AVX-512 clone on its own, and a call stops vectorisation.
#define GRPO_INLINE __attribute__((always_inline)) inline

namespace grpo {

GRPO_INLINE float bitsToFloat(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// exp(x) for float32, branch-free so loops over it vectorise: Cody-Waite range reduction
// x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for exp(r), and 2^n built in the exponent
// bits. Relative error about 2e-7 over the normal range; 0 below -87.3 (where the result would
// be subnormal, so the absolute error is < 1.2e-38), +inf above 88.72 as float32 overflows,
// NaN for NaN.
GRPO_INLINE float fastExp(float xin) {
  float x = xin < -87.33654f ? -87.33654f : (xin > 88.72283f ? 88.72283f : xin);
  // round(x / ln2) with the 1.5 * 2^23 trick: exact for |x / ln2| < 2^22, no rounding-mode calls
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;  // ln2 split in a short high part and a correction
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n: n in [-126, 128]; split in two factors so n = 128 and n = -126 stay representable
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;
  const float y = p * bitsToFloat((half + 127) << 23) * bitsToFloat((ni - half + 127) << 23);
  const float big = xin > 88.72283f ? __builtin_inff() : y;
  const float out = xin < -87.33654f ? 0.0f : big;
  return xin != xin ? xin : out;
}

GRPO_INLINE float fastSigmoid(float x) { return 1.0f / (1.0f + fastExp(-x)); }

// 16 floats as one GCC vector: a zmm register in AVX-512 clones, two ymm or four xmm otherwise.
// Used where the auto-vectoriser will not go by itself (float max/min reductions with NaN
// semantics: it refuses to turn `a > b ? a : b` into blends without -ffast-math, and falls back to
// branches that mispredict on real data).
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

GRPO_INLINE v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

GRPO_INLINE v16f splat16(float x) { return x - v16f{}; }

GRPO_INLINE float hsum16(v16f v) {
  float s = 0;
  for (int k = 0; k < 16; k++) s += v[k];
  return s;
}

GRPO_INLINE float hmax16(v16f v) {
  float m = v[0];
  for (int k = 1; k < 16; k++) m = v[k] > m ? v[k] : m;
  return m;
}

GRPO_INLINE float hmin16(v16f v) {
  float m = v[0];
  for (int k = 1; k < 16; k++) m = v[k] < m ? v[k] : m;
  return m;
}

GRPO_INLINE bool anyTrue16(v16i m) {
  int32_t any = 0;
  for (int k = 0; k < 16; k++) any |= m[k];
  return any != 0;
}

// Sum of a contiguous run.
GRPO_INLINE float sumRun(const float* x, int64_t n) {
  v16f acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load16(x + i);
  float s = hsum16(acc);
  for (; i < n; i++) s += x[i];
  return s;
}

// Max of a contiguous run; NaN if any element is NaN (as Math.max).
GRPO_INLINE float maxRun(const float* x, int64_t n) {
  v16f acc = splat16(-std::numeric_limits<float>::infinity());
  v16i nan = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16f v = load16(x + i);
    acc = v > acc ? v : acc;
    nan |= v != v;
  }
  float m = hmax16(acc);
  bool bad = anyTrue16(nan);
  for (; i < n; i++) {
    m = x[i] > m ? x[i] : m;
    bad |= x[i] != x[i];
  }
  return bad ? std::numeric_limits<float>::quiet_NaN() : m;
}

// Min of a contiguous run; NaN if any element is NaN.
GRPO_INLINE float minRun(const float* x, int64_t n) {
  v16f acc = splat16(std::numeric_limits<float>::infinity());
  v16i nan = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16f v = load16(x + i);
    acc = v < acc ? v : acc;
    nan |= v != v;
  }
  float m = hmin16(acc);
  bool bad = anyTrue16(nan);
  for (; i < n; i++) {
    m = x[i] < m ? x[i] : m;
    bad |= x[i] != x[i];
  }
  return bad ? std::numeric_limits<float>::quiet_NaN() : m;
}

}  // namespace grpo
