// Data-movement kernels on wasm-heap tensors: one strided copy that serves Transpose, Slice,
// SplitV, Concat, Reverse, Tile and Pad; row gather (GatherV2) and its gradient
// (UnsortedSegmentSum); dtype casts.
//
// copy(heap, srcOff, dstOff, elemBytes, layout)  layout = Int32Array [r, shape[r],
//   srcStrides[r], dstStrides[r]] in elements; source strides may be negative or 0.
// gather(heap, xOff, idxOff, outOff, outer, axisLen, inner, nIdx)
//   out[o, j, :] = x[o, idx[j], :] for rows of `inner` 4-byte elements; throws on a bad index.
// segmentSum(heap, xOff, idsOff, outOff, n, inner, numSegments)
//   out[s, :] = sum of x[i, :] over i with ids[i] = s; ids outside [0, numSegments) are dropped.
// cast(heap, mode, xOff, outOff, n)  mode 0: int32 -> float32, 1: float32 -> int32 (toward 0),
//   2: bool (uint8) -> float32, 3: float32 -> bool (x != 0).
#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"
#include "simd.h"

namespace grpo {

namespace {

constexpr int kMaxRank = 8;
constexpr int64_t kCopyGrain = 32768;  // elements per task

struct CopyLayout {
  int rank;
  int64_t shape[kMaxRank];
  int64_t src[kMaxRank];
  int64_t dst[kMaxRank];
};

template <typename T>
GRPO_INLINE void copyRun(const T* src, int64_t ss, T* dst, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    if (n >= 64) {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
    } else {
      for (int64_t i = 0; i < n; i++) dst[i] = src[i];  // short runs: no call
    }
  } else {
    for (int64_t i = 0; i < n; i++) dst[i * ds] = src[i * ss];
  }
}

// Copies elements [begin, end) of the walk in runs along the innermost dimension. The outer
// multi-index is decomposed once and then advanced like an odometer, so short runs (a transpose
// of 32-float rows, a reverse of 16-float halves) cost no divisions.
template <typename T>
void copyRange(const CopyLayout& L, const T* src, T* dst, int64_t begin, int64_t end) {
  const int r = L.rank;
  const int64_t inner = L.shape[r - 1];
  const int64_t ss = L.src[r - 1], ds = L.dst[r - 1];
  int64_t idx[kMaxRank] = {0};
  int64_t row = begin / inner;
  int64_t col = begin % inner;
  int64_t so = col * ss, dof = col * ds;
  for (int d = r - 2; d >= 0; d--) {
    idx[d] = row % L.shape[d];
    row /= L.shape[d];
    so += idx[d] * L.src[d];
    dof += idx[d] * L.dst[d];
  }
  int64_t pos = begin;
  while (pos < end) {
    const int64_t n = std::min(inner - col, end - pos);
    copyRun(src + so, ss, dst + dof, ds, n);
    pos += n;
    // next row: back to column 0, then carry through the outer dimensions
    so -= col * ss;
    dof -= col * ds;
    col = 0;
    for (int d = r - 2; d >= 0; d--) {
      so += L.src[d];
      dof += L.dst[d];
      if (++idx[d] < L.shape[d]) break;
      so -= idx[d] * L.src[d];
      dof -= idx[d] * L.dst[d];
      idx[d] = 0;
    }
  }
}

GRPO_CLONES void segmentSumColumns(const float* x, const int32_t* ids, float* out, int64_t n, int64_t inner,
                                   int64_t numSegments, int64_t c0, int64_t c1) {
  for (int64_t s = 0; s < numSegments; s++) std::memset(out + s * inner + c0, 0, (c1 - c0) * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    const int64_t s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const float* xr = x + i * inner;
    float* orow = out + s * inner;
    for (int64_t c = c0; c < c1; c++) orow[c] += xr[c];
  }
}

GRPO_CLONES void castLoop(int mode, const void* x, void* out, int64_t b, int64_t e) {
  switch (mode) {
    case 0: {
      const int32_t* in = static_cast<const int32_t*>(x);
      float* o = static_cast<float*>(out);
      for (int64_t i = b; i < e; i++) o[i] = static_cast<float>(in[i]);
      break;
    }
    case 1: {
      const float* in = static_cast<const float*>(x);
      int32_t* o = static_cast<int32_t*>(out);
      for (int64_t i = b; i < e; i++) o[i] = static_cast<int32_t>(in[i]);
      break;
    }
    case 2: {
      const uint8_t* in = static_cast<const uint8_t*>(x);
      float* o = static_cast<float*>(out);
      for (int64_t i = b; i < e; i++) o[i] = in[i] != 0 ? 1.0f : 0.0f;
      break;
    }
    default: {
      const float* in = static_cast<const float*>(x);
      uint8_t* o = static_cast<uint8_t*>(out);
      for (int64_t i = b; i < e; i++) o[i] = in[i] != 0.0f ? 1 : 0;
      break;
    }
  }
}

}  // namespace

napi_value Copy(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t elemBytes = args.i64(3);
  size_t len = 0;
  const int32_t* lay = args.i32array(4, &len);
  if (!args.ok()) return nullptr;
  const int r = len > 0 ? lay[0] : 0;
  if (r < 1 || r > kMaxRank || len < static_cast<size_t>(1 + 3 * r) ||
      (elemBytes != 1 && elemBytes != 4)) {
    args.fail("copy: layout must be [r, shape[r], srcStrides[r], dstStrides[r]] (1 <= r <= 8), elemBytes 1 or 4");
    return nullptr;
  }
  CopyLayout L;
  L.rank = r;
  int64_t total = 1;
  for (int d = 0; d < r; d++) {
    L.shape[d] = lay[1 + d];
    L.src[d] = lay[1 + r + d];
    L.dst[d] = lay[1 + 2 * r + d];
    total *= L.shape[d];
  }
  void* src = args.strided(1, r, lay + 1, lay + 1 + r, elemBytes);
  void* dst = args.strided(2, r, lay + 1, lay + 1 + 2 * r, elemBytes);
  if (!args.ok() || total == 0) return nullptr;
  if (elemBytes == 4) {
    const int32_t* s = static_cast<const int32_t*>(src);
    int32_t* d = static_cast<int32_t*>(dst);
    parallelFor(total, kCopyGrain, [&](int64_t b, int64_t e) { copyRange(L, s, d, b, e); });
  } else {
    const uint8_t* s = static_cast<const uint8_t*>(src);
    uint8_t* d = static_cast<uint8_t*>(dst);
    parallelFor(total, kCopyGrain * 4, [&](int64_t b, int64_t e) { copyRange(L, s, d, b, e); });
  }
  return nullptr;
}

napi_value Gather(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t outer = args.i64(4), axisLen = args.i64(5), inner = args.i64(6), nIdx = args.i64(7);
  const int32_t* x = args.ptr<int32_t>(1, outer * axisLen * inner);
  const int32_t* idx = args.ptr<int32_t>(2, nIdx);
  int32_t* out = args.ptr<int32_t>(3, outer * nIdx * inner);
  if (!args.ok()) return nullptr;
  for (int64_t j = 0; j < nIdx; j++) {
    if (idx[j] < 0 || idx[j] >= axisLen) {
      args.fail("gather: an index lies outside [0, axis size)");
      return nullptr;
    }
  }
  const size_t rowBytes = static_cast<size_t>(inner) * 4;
  parallelFor(outer * nIdx, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, inner)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const int64_t o = t / nIdx, j = t % nIdx;
      std::memcpy(out + t * inner, x + (o * axisLen + idx[j]) * inner, rowBytes);
    }
  });
  return nullptr;
}

napi_value SegmentSum(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t n = args.i64(4), inner = args.i64(5), numSegments = args.i64(6);
  const float* x = args.ptr<float>(1, n * inner);
  const int32_t* ids = args.ptr<int32_t>(2, n);
  float* out = args.ptr<float>(3, numSegments * inner);
  if (!args.ok()) return nullptr;
  // threads own disjoint column ranges, so every output element has one writer
  parallelFor(inner, std::max<int64_t>(16, kCopyGrain / std::max<int64_t>(1, n)), [&](int64_t c0, int64_t c1) {
    segmentSumColumns(x, ids, out, n, inner, numSegments, c0, c1);
  });
  return nullptr;
}

napi_value Cast(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t mode = args.i64(1), n = args.i64(4);
  const size_t inBytes = mode == 2 ? 1 : 4, outBytes = mode == 3 ? 1 : 4;
  void* x = args.ptr<uint8_t>(2, n * inBytes);
  void* out = args.ptr<uint8_t>(3, n * outBytes);
  if (!args.ok()) return nullptr;
  if (mode < 0 || mode > 3) {
    args.fail("cast: unknown mode");
    return nullptr;
  }
  parallelFor(n, kCopyGrain, [&](int64_t b, int64_t e) { castLoop(static_cast<int>(mode), x, out, b, e); });
  return nullptr;
}

}  // namespace grpo
