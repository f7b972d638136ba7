// Reductions and softmax on wasm-heap float32 tensors.
//
// reduce(heap, op, xOff, outOff, O, R, I)  x viewed as [O, R, I], out[o, i] = op over r of
//   x[o, r, i]; op 0 sum, 1 mean, 2 max, 3 min. The TS side maps any set of adjacent axes to it.
// softmax(heap, xOff, outOff, rows, cols)  softmax over the last axis of x [rows, cols].
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"
#include "simd.h"

namespace grpo {

namespace {

enum Reduce { kSum, kMean, kMax, kMin };

constexpr int64_t kGrain = 16384;
constexpr int64_t kColumnBlock = 512;  // columns per task when reducing over a middle/outer axis

// Reduces each of `count` contiguous rows of length n to one value.
GRPO_CLONES void reduceRows(int op, const float* x, float* out, int64_t count, int64_t n, float scale) {
  for (int64_t r = 0; r < count; r++) {
    const float* row = x + r * n;
    out[r] = op == kMax ? maxRun(row, n) : op == kMin ? minRun(row, n) : sumRun(row, n) * scale;
  }
}

// out[c] (op)= x[c] for a block of columns, one reduced row at a time; NaN sticks (max/min).
GRPO_CLONES void accumulateColumns(int op, const float* x, float* out, int64_t n) {
  int64_t c = 0;
  if (op == kMax) {
    for (; c + 16 <= n; c += 16) {
      const v16f v = load16(x + c), o = load16(out + c);
      const v16f r = (v > o) | (v != v) ? v : o;
      std::memcpy(out + c, &r, sizeof r);
    }
    for (; c < n; c++) out[c] = (x[c] > out[c]) | (x[c] != x[c]) ? x[c] : out[c];
  } else if (op == kMin) {
    for (; c + 16 <= n; c += 16) {
      const v16f v = load16(x + c), o = load16(out + c);
      const v16f r = (v < o) | (v != v) ? v : o;
      std::memcpy(out + c, &r, sizeof r);
    }
    for (; c < n; c++) out[c] = (x[c] < out[c]) | (x[c] != x[c]) ? x[c] : out[c];
  } else {
    for (; c < n; c++) out[c] += x[c];
  }
}

// Softmax of `count` rows of length n, three passes over each row while it sits in L1:
// max, exp(x - max) with its sum, scale by 1 / sum.
GRPO_CLONES void softmaxRows(const float* x, float* out, int64_t count, int64_t n) {
  for (int64_t r = 0; r < count; r++) {
    const float* xr = x + r * n;
    float* orow = out + r * n;
    const float m = maxRun(xr, n);
    for (int64_t i = 0; i < n; i++) orow[i] = fastExp(xr[i] - m);
    const float inv = 1.0f / sumRun(orow, n);
    for (int64_t i = 0; i < n; i++) orow[i] *= inv;
  }
}

}  // namespace

napi_value ReduceAxes(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t op = args.i64(1), O = args.i64(4), R = args.i64(5), I = args.i64(6);
  const float* x = args.ptr<float>(2, O * R * I);
  float* out = args.ptr<float>(3, O * I);
  if (!args.ok()) return nullptr;
  if (op < kSum || op > kMin || R < 1) {
    args.fail("reduce: unknown op or empty reduced axis");
    return nullptr;
  }
  const float scale = op == kMean ? 1.0f / static_cast<float>(R) : 1.0f;
  if (I == 1) {
    parallelFor(O, std::max<int64_t>(1, kGrain / R), [&](int64_t b, int64_t e) {
      reduceRows(static_cast<int>(op), x + b * R, out + b, e - b, R, scale);
    });
    return nullptr;
  }
  const int64_t blocks = (I + kColumnBlock - 1) / kColumnBlock;
  parallelFor(O * blocks, std::max<int64_t>(1, kGrain / (R * std::min(I, kColumnBlock))), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const int64_t o = t / blocks, c0 = (t % blocks) * kColumnBlock;
      const int64_t n = std::min(kColumnBlock, I - c0);
      const float* base = x + o * R * I + c0;
      float* dst = out + o * I + c0;
      std::copy(base, base + n, dst);
      for (int64_t r = 1; r < R; r++) accumulateColumns(static_cast<int>(op), base + r * I, dst, n);
      if (op == kMean) {
        for (int64_t c = 0; c < n; c++) dst[c] *= scale;
      }
    }
  });
  return nullptr;
}

napi_value Softmax(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t rows = args.i64(3), cols = args.i64(4);
  const float* x = args.ptr<float>(1, rows * cols);
  float* out = args.ptr<float>(2, rows * cols);
  if (!args.ok() || cols == 0) return nullptr;
  parallelFor(rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t b, int64_t e) {
    softmaxRows(x + b * cols, out + b * cols, e - b, cols);
  });
  return nullptr;
}

}  // namespace grpo
