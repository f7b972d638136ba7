// Fused kernels: work that TensorFlow.js would run as a chain of elementwise ops, each a full pass
// over memory into a fresh buffer, done here in one pass. At a real model's size these chains,
// not the GEMMs, were the step's largest cost after OpenBLAS (AdamW over 135M parameters alone
// made about 30 passes over 540 MB arrays).
//
// adamw(heap, p, g, m, v, pOut, mOut, vOut, n, beta1, beta2, eps, stepSize, bc2Sqrt, decay)
//   m' = beta1 m + (1 - beta1) g;  v' = beta2 v + (1 - beta2) g^2
//   p' = p decay - stepSize m' / (sqrt(v') / bc2Sqrt + eps)      (src/optim/adamw.ts, same order)
//   pOut, mOut, vOut are either three fresh tensors or p, m, v themselves (updated in place).
// swiglu(heap, gu, out, rows, I)          out[r, j] = silu(gu[r, j]) gu[r, I + j]; gu [rows, 2I]
// swigluGrad(heap, gu, dy, dgu, rows, I)  dgu [rows, 2I] = d out / d gu for upstream dy [rows, I]
// rmsNorm(heap, x, w, y, rows, d, eps)    y = x rsqrt(mean(x^2) + eps) w, rows of d
// rmsNormGrad(heap, x, w, dy, dx, dw, rows, d, eps)
//   r = rsqrt(mean(x^2) + eps), xr = x r, g = dy w:  dx = r (g - xr mean(g xr)),  dw = sum_rows dy xr
// rope(heap, x, cos, sin, out, B, inner, hd, tableStride)
//   rotary embedding with the half swap in the tables' sign (src/model/rope.ts): x [B, inner] in rows
//   of hd, out = x cos + swap(x) sin, swap exchanging the two halves of each row; the tables repeat
//   every tableStride elements of x (0: one table for the whole batch, else inner)
// ropeGrad(heap, dy, cos, sin, dx, B, inner, hd, tableStride)   dx = dy cos + swap(dy sin)
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"
#include "simd.h"

namespace grpo {

namespace {

constexpr int64_t kGrain = 16384;  // elements per task

struct AdamCoefs {
  float b1, c1, b2, c2, eps, step, bc2, decay;
};

// Fresh outputs: no pointer aliases another (restrict lets GCC vectorise without overlap checks).
GRPO_CLONES void adamwLoop(const float* __restrict__ p, const float* __restrict__ g, const float* __restrict__ m,
                           const float* __restrict__ v, float* __restrict__ po, float* __restrict__ mo,
                           float* __restrict__ vo, int64_t n, AdamCoefs k) {
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = m[i] * k.b1 + gi * k.c1;
    const float vi = v[i] * k.b2 + (gi * gi) * k.c2;
    const float denom = std::sqrt(vi) / k.bc2 + k.eps;
    po[i] = p[i] * k.decay - (mi / denom) * k.step;
    mo[i] = mi;
    vo[i] = vi;
  }
}

// In place (p, m, v overwritten): the same arithmetic; each element is read before it is written.
GRPO_CLONES void adamwInPlace(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                              float* __restrict__ v, int64_t n, AdamCoefs k) {
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = m[i] * k.b1 + gi * k.c1;
    const float vi = v[i] * k.b2 + (gi * gi) * k.c2;
    const float denom = std::sqrt(vi) / k.bc2 + k.eps;
    p[i] = p[i] * k.decay - (mi / denom) * k.step;
    m[i] = mi;
    v[i] = vi;
  }
}

GRPO_CLONES void swigluRow(const float* gate, const float* up, float* out, int64_t I) {
  for (int64_t j = 0; j < I; j++) {
    const float g = gate[j];
    out[j] = (g * fastSigmoid(g)) * up[j];
  }
}

GRPO_CLONES void swigluGradRow(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t I) {
  for (int64_t j = 0; j < I; j++) {
    const float g = gate[j], s = fastSigmoid(g), d = dy[j];
    dup[j] = d * (g * s);
    dgate[j] = (d * up[j]) * (s + g * (s * (1.0f - s)));
  }
}

GRPO_CLONES void ropeRow(const float* __restrict__ x, const float* __restrict__ c, const float* __restrict__ s,
                         float* __restrict__ out, int64_t h) {
  for (int64_t j = 0; j < h; j++) {
    out[j] = x[j] * c[j] + x[j + h] * s[j];
    out[j + h] = x[j + h] * c[j + h] + x[j] * s[j + h];
  }
}

GRPO_CLONES void ropeGradRow(const float* __restrict__ dy, const float* __restrict__ c, const float* __restrict__ s,
                             float* __restrict__ dx, int64_t h) {
  for (int64_t j = 0; j < h; j++) {
    dx[j] = dy[j] * c[j] + dy[j + h] * s[j + h];
    dx[j + h] = dy[j + h] * c[j + h] + dy[j] * s[j];
  }
}

GRPO_CLONES float sumSquares(const float* x, int64_t d) {
  float acc = 0.0f;
  for (int64_t j = 0; j < d; j++) acc += x[j] * x[j];
  return acc;
}

GRPO_CLONES void scaleRow(const float* x, const float* w, float r, float* y, int64_t d) {
  for (int64_t j = 0; j < d; j++) y[j] = (x[j] * r) * w[j];
}

// dx for one row, and dw += dy xr; returns nothing (mean(g xr) is computed first).
GRPO_CLONES void rmsGradRow(const float* x, const float* w, const float* dy, float r, float* dx, float* dw, int64_t d) {
  float dot = 0.0f;
  for (int64_t j = 0; j < d; j++) dot += (dy[j] * w[j]) * (x[j] * r);
  const float mean = dot / static_cast<float>(d);
  for (int64_t j = 0; j < d; j++) {
    const float xr = x[j] * r;
    dx[j] = ((dy[j] * w[j]) - xr * mean) * r;
    dw[j] += dy[j] * xr;
  }
}

float rmsScale(const float* x, int64_t d, float eps) {
  return 1.0f / std::sqrt(sumSquares(x, d) / static_cast<float>(d) + eps);
}

// Rows per task so a task covers about kGrain elements.
int64_t rowGrain(int64_t width) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width)); }

}  // namespace

napi_value AdamW(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t n = args.i64(8);
  AdamCoefs k;
  const double b1 = args.f64(9), b2 = args.f64(10);
  k.b1 = static_cast<float>(b1);
  k.c1 = static_cast<float>(1.0 - b1);
  k.b2 = static_cast<float>(b2);
  k.c2 = static_cast<float>(1.0 - b2);
  k.eps = static_cast<float>(args.f64(11));
  k.step = static_cast<float>(args.f64(12));
  k.bc2 = static_cast<float>(args.f64(13));
  k.decay = static_cast<float>(args.f64(14));
  const float* p = args.ptr<float>(1, n);
  const float* g = args.ptr<float>(2, n);
  const float* m = args.ptr<float>(3, n);
  const float* v = args.ptr<float>(4, n);
  float* po = args.ptr<float>(5, n);
  float* mo = args.ptr<float>(6, n);
  float* vo = args.ptr<float>(7, n);
  if (!args.ok() || n <= 0) return nullptr;
  const bool inPlace = po == p && mo == m && vo == v;
  if (!inPlace && (po == p || mo == m || vo == v)) {
    args.fail("adamw: outputs must be all fresh or all the inputs p, m, v (in place)");
    return nullptr;
  }
  if (inPlace) {
    parallelFor(n, kGrain, [&](int64_t b, int64_t e) { adamwInPlace(po + b, g + b, mo + b, vo + b, e - b, k); });
  } else {
    parallelFor(n, kGrain, [&](int64_t b, int64_t e) { adamwLoop(p + b, g + b, m + b, v + b, po + b, mo + b, vo + b, e - b, k); });
  }
  return nullptr;
}

napi_value SwiGLU(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t rows = args.i64(3), I = args.i64(4);
  const float* gu = args.ptr<float>(1, rows * 2 * I);
  float* out = args.ptr<float>(2, rows * I);
  if (!args.ok() || rows <= 0 || I <= 0) return nullptr;
  parallelFor(rows, rowGrain(I), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) swigluRow(gu + r * 2 * I, gu + r * 2 * I + I, out + r * I, I);
  });
  return nullptr;
}

napi_value SwiGLUGrad(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t rows = args.i64(4), I = args.i64(5);
  const float* gu = args.ptr<float>(1, rows * 2 * I);
  const float* dy = args.ptr<float>(2, rows * I);
  float* dgu = args.ptr<float>(3, rows * 2 * I);
  if (!args.ok() || rows <= 0 || I <= 0) return nullptr;
  parallelFor(rows, rowGrain(I), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* row = gu + r * 2 * I;
      swigluGradRow(row, row + I, dy + r * I, dgu + r * 2 * I, dgu + r * 2 * I + I, I);
    }
  });
  return nullptr;
}

napi_value RmsNorm(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t rows = args.i64(4), d = args.i64(5);
  const float eps = static_cast<float>(args.f64(6));
  const float* x = args.ptr<float>(1, rows * d);
  const float* w = args.ptr<float>(2, d);
  float* y = args.ptr<float>(3, rows * d);
  if (!args.ok() || rows <= 0 || d <= 0) return nullptr;
  parallelFor(rows, rowGrain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) scaleRow(x + r * d, w, rmsScale(x + r * d, d, eps), y + r * d, d);
  });
  return nullptr;
}

napi_value RmsNormGrad(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t rows = args.i64(6), d = args.i64(7);
  const float eps = static_cast<float>(args.f64(8));
  const float* x = args.ptr<float>(1, rows * d);
  const float* w = args.ptr<float>(2, d);
  const float* dy = args.ptr<float>(3, rows * d);
  float* dx = args.ptr<float>(4, rows * d);
  float* dw = args.ptr<float>(5, d);
  if (!args.ok() || d <= 0) return nullptr;
  std::fill(dw, dw + d, 0.0f);
  if (rows <= 0) return nullptr;
  // dw: each block of rows sums into its own row of `partial`, added up in block order afterwards,
  // so the result does not depend on which thread ran which block
  const int64_t blocks = std::min<int64_t>(rows, std::max<int64_t>(1, rows * d / kGrain));
  std::vector<float> partial(static_cast<size_t>(blocks * d), 0.0f);
  parallelFor(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      float* acc = partial.data() + b * d;
      for (int64_t r = rows * b / blocks; r < rows * (b + 1) / blocks; r++) {
        rmsGradRow(x + r * d, w, dy + r * d, rmsScale(x + r * d, d, eps), dx + r * d, acc, d);
      }
    }
  });
  for (int64_t b = 0; b < blocks; b++) {
    const float* acc = partial.data() + b * d;
    for (int64_t j = 0; j < d; j++) dw[j] += acc[j];
  }
  return nullptr;
}

// Shared by rope and ropeGrad: argument checks, then one row of hd at a time over the pool.
template <bool kGrad>
napi_value RopeImpl(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t B = args.i64(5), inner = args.i64(6), hd = args.i64(7), tableStride = args.i64(8);
  if (!args.ok()) return nullptr;
  if (B < 0 || inner < 0 || hd < 2 || hd % 2 != 0 || inner % hd != 0 || (tableStride != 0 && tableStride != inner)) {
    args.fail("rope: need an even hd dividing inner, and a table stride of 0 or inner");
    return nullptr;
  }
  const int64_t tables = tableStride == 0 ? inner : B * inner;
  const float* x = args.ptr<float>(1, B * inner);
  const float* c = args.ptr<float>(2, tables);
  const float* s = args.ptr<float>(3, tables);
  float* out = args.ptr<float>(4, B * inner);
  if (!args.ok() || B * inner == 0) return nullptr;
  const int64_t rowsPerB = inner / hd;
  parallelFor(B * rowsPerB, rowGrain(hd), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / rowsPerB, at = r * hd, t = b * tableStride + (r % rowsPerB) * hd;
      if (kGrad) ropeGradRow(x + at, c + t, s + t, out + at, hd / 2);
      else ropeRow(x + at, c + t, s + t, out + at, hd / 2);
    }
  });
  return nullptr;
}

napi_value Rope(napi_env env, napi_callback_info info) { return RopeImpl<false>(env, info); }
napi_value RopeGrad(napi_env env, napi_callback_info info) { return RopeImpl<true>(env, info); }

}  // namespace grpo
