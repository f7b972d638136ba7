// Elementwise float32 kernels on wasm-heap tensors, split over the thread pool.
//
// unary(heap, op, xOff, outOff, n)
// binary(heap, op, aOff, bOff, outOff, layout)  layout = Int32Array [r, shape[r], aStrides[r],
//   bStrides[r]]: out is contiguous with `shape`; a and b are read at their element strides, 0 on
//   broadcast dimensions. The TS side collapses dimensions first, so r is small (usually 1-3).
// The op codes are mirrored in src/shared/engine/native-addon.ts.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"
#include "simd.h"

namespace grpo {

namespace {

constexpr int64_t kGrain = 16384;  // elements per task: below this, threading costs more than it saves
constexpr int kMaxRank = 8;

enum Unary { kNeg, kExp, kLog, kSqrt, kRsqrt, kSquare, kSigmoid, kReciprocal, kAbs, kRelu, kUnaryCount };
enum Binary { kAdd, kSub, kMul, kDiv, kMax, kMin, kSquaredDiff, kBinaryCount };

struct OpNeg { static GRPO_INLINE float f(float x) { return -x; } };
struct OpExp { static GRPO_INLINE float f(float x) { return fastExp(x); } };
struct OpLog { static GRPO_INLINE float f(float x) { return std::log(x); } };
struct OpSqrt { static GRPO_INLINE float f(float x) { return std::sqrt(x); } };
struct OpRsqrt { static GRPO_INLINE float f(float x) { return 1.0f / std::sqrt(x); } };
struct OpSquare { static GRPO_INLINE float f(float x) { return x * x; } };
struct OpSigmoid { static GRPO_INLINE float f(float x) { return fastSigmoid(x); } };
struct OpReciprocal { static GRPO_INLINE float f(float x) { return 1.0f / x; } };
struct OpAbs { static GRPO_INLINE float f(float x) { return std::fabs(x); } };
struct OpRelu { static GRPO_INLINE float f(float x) { return x > 0.0f ? x : (x != x ? x : 0.0f); } };

struct OpAdd { static GRPO_INLINE float f(float a, float b) { return a + b; } };
struct OpSub { static GRPO_INLINE float f(float a, float b) { return a - b; } };
struct OpMul { static GRPO_INLINE float f(float a, float b) { return a * b; } };
struct OpDiv { static GRPO_INLINE float f(float a, float b) { return a / b; } };
// NaN in either input gives NaN, as Math.max / Math.min do
struct OpMax {
  static GRPO_INLINE float f(float a, float b) {
    const float m = a > b ? a : b;
    return ((a != a) | (b != b)) ? a + b : m;
  }
};
struct OpMin {
  static GRPO_INLINE float f(float a, float b) {
    const float m = a < b ? a : b;
    return ((a != a) | (b != b)) ? a + b : m;
  }
};
struct OpSquaredDiff {
  static GRPO_INLINE float f(float a, float b) {
    const float d = a - b;
    return d * d;
  }
};

template <class Op>
GRPO_CLONES void unaryLoop(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = Op::f(x[i]);
}

template <class Op>
void runUnary(const float* x, float* out, int64_t n) {
  parallelFor(n, kGrain, [&](int64_t b, int64_t e) { unaryLoop<Op>(x + b, out + b, e - b); });
}

// One contiguous run of the output with each input either contiguous (stride 1) or one value.
template <class Op>
GRPO_CLONES void binaryRunVV(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = Op::f(a[i], b[i]);
}
template <class Op>
GRPO_CLONES void binaryRunVS(const float* a, float b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = Op::f(a[i], b);
}
template <class Op>
GRPO_CLONES void binaryRunSV(float a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = Op::f(a, b[i]);
}

struct Layout {
  int rank;
  int64_t shape[kMaxRank];
  int64_t aStride[kMaxRank];
  int64_t bStride[kMaxRank];
};

// Processes output elements [begin, end) in runs along the innermost dimension.
template <class Op>
void binaryRange(const Layout& L, const float* a, const float* b, float* out, int64_t begin, int64_t end) {
  const int r = L.rank;
  const int64_t inner = L.shape[r - 1];
  const int64_t sa = L.aStride[r - 1], sb = L.bStride[r - 1];
  int64_t pos = begin;
  while (pos < end) {
    int64_t row = pos / inner;
    const int64_t col = pos % inner;
    int64_t ao = col * sa, bo = col * sb;
    for (int d = r - 2; d >= 0; d--) {
      const int64_t idx = row % L.shape[d];
      row /= L.shape[d];
      ao += idx * L.aStride[d];
      bo += idx * L.bStride[d];
    }
    const int64_t n = std::min(inner - col, end - pos);
    if (sa != 0 && sb != 0) binaryRunVV<Op>(a + ao, b + bo, out + pos, n);
    else if (sa != 0) binaryRunVS<Op>(a + ao, b[bo], out + pos, n);
    else if (sb != 0) binaryRunSV<Op>(a[ao], b + bo, out + pos, n);
    else {
      const float v = Op::f(a[ao], b[bo]);
      for (int64_t i = 0; i < n; i++) out[pos + i] = v;
    }
    pos += n;
  }
}

template <class Op>
void runBinary(const Layout& L, const float* a, const float* b, float* out, int64_t total) {
  parallelFor(total, kGrain, [&](int64_t s, int64_t e) { binaryRange<Op>(L, a, b, out, s, e); });
}

}  // namespace

napi_value Unary(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t op = args.i64(1), n = args.i64(4);
  const float* x = args.ptr<float>(2, n);
  float* out = args.ptr<float>(3, n);
  if (!args.ok()) return nullptr;
  switch (op) {
    case kNeg: runUnary<OpNeg>(x, out, n); break;
    case kExp: runUnary<OpExp>(x, out, n); break;
    case kLog: runUnary<OpLog>(x, out, n); break;
    case kSqrt: runUnary<OpSqrt>(x, out, n); break;
    case kRsqrt: runUnary<OpRsqrt>(x, out, n); break;
    case kSquare: runUnary<OpSquare>(x, out, n); break;
    case kSigmoid: runUnary<OpSigmoid>(x, out, n); break;
    case kReciprocal: runUnary<OpReciprocal>(x, out, n); break;
    case kAbs: runUnary<OpAbs>(x, out, n); break;
    case kRelu: runUnary<OpRelu>(x, out, n); break;
    default: args.fail("unary: unknown op code");
  }
  return nullptr;
}

napi_value Binary(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t op = args.i64(1);
  size_t len = 0;
  const int32_t* lay = args.i32array(5, &len);
  if (!args.ok()) return nullptr;
  const int r = len > 0 ? lay[0] : 0;
  if (r < 1 || r > kMaxRank || len < static_cast<size_t>(1 + 3 * r)) {
    args.fail("binary: layout must be [r, shape[r], aStrides[r], bStrides[r]] with 1 <= r <= 8");
    return nullptr;
  }
  const int32_t* shape = lay + 1;
  const int32_t* as = lay + 1 + r;
  const int32_t* bs = lay + 1 + 2 * r;
  int32_t outStrides[kMaxRank];
  Layout L;
  L.rank = r;
  int64_t total = 1;
  for (int d = r - 1; d >= 0; d--) {
    outStrides[d] = static_cast<int32_t>(total);
    L.shape[d] = shape[d];
    L.aStride[d] = as[d];
    L.bStride[d] = bs[d];
    total *= shape[d];
  }
  if ((as[r - 1] != 0 && as[r - 1] != 1) || (bs[r - 1] != 0 && bs[r - 1] != 1)) {
    args.fail("binary: innermost strides must be 0 or 1");
    return nullptr;
  }
  const float* a = static_cast<const float*>(args.strided(2, r, shape, as, 4));
  const float* b = static_cast<const float*>(args.strided(3, r, shape, bs, 4));
  float* out = static_cast<float*>(args.strided(4, r, shape, outStrides, 4));
  if (!args.ok() || total == 0) return nullptr;
  switch (op) {
    case kAdd: runBinary<OpAdd>(L, a, b, out, total); break;
    case kSub: runBinary<OpSub>(L, a, b, out, total); break;
    case kMul: runBinary<OpMul>(L, a, b, out, total); break;
    case kDiv: runBinary<OpDiv>(L, a, b, out, total); break;
    case kMax: runBinary<OpMax>(L, a, b, out, total); break;
    case kMin: runBinary<OpMin>(L, a, b, out, total); break;
    case kSquaredDiff: runBinary<OpSquaredDiff>(L, a, b, out, total); break;
    default: args.fail("binary: unknown op code");
  }
  return nullptr;
}

}  // namespace grpo
