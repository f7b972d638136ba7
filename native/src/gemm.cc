// Batched single-precision GEMM on wasm-heap tensors through OpenBLAS cblas_sgemm.
//
// gemm(heap, aOff, bOff, cOff, batch, M, N, K, transA, transB, aStride, bStride)
//   C[i] = op(A[i]) x op(B[i]) for i < batch, C row-major [batch, M, N], written in place.
//   A[i] starts aStride elements after A[i-1] (0 broadcasts one matrix to every batch), same for
//   B; op(A) is [M, K] (A stored [K, M] when transA), op(B) is [K, N] (B stored [N, K] when transB).
//
// OpenBLAS runs single-threaded (set at load); the work is split over our pool instead: whole
// matrices per thread for a batch of small GEMMs (attention), row or column blocks of one GEMM
// otherwise. Each block is an ordinary sgemm on a sub-matrix with the original leading dimension.
#include <cblas.h>

#include <algorithm>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"

namespace grpo {

namespace {

int64_t span(int64_t batch, int64_t stride, int64_t matrix) {
  return stride == 0 ? matrix : (batch - 1) * stride + matrix;
}

// Below this many multiply-adds a GEMM runs on one thread: splitting would cost more than it saves.
constexpr int64_t kParallelMacs = 1 << 17;
constexpr int64_t kMinBlock = 16;  // rows or columns per block

struct Gemm3 {
  const float* a;
  const float* b;
  float* c;
  int64_t M, N, K;
  bool transA, transB;

  // C[r0:r1, c0:c1] = op(A)[r0:r1, :] x op(B)[:, c0:c1]
  void block(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
    if (r1 <= r0 || c1 <= c0) return;
    const float* ap = transA ? a + r0 : a + r0 * K;
    const float* bp = transB ? b + c0 * K : b + c0;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                static_cast<int>(r1 - r0), static_cast<int>(c1 - c0), static_cast<int>(K), 1.0f, ap,
                static_cast<int>(transA ? M : K), bp, static_cast<int>(transB ? K : N), 0.0f, c + r0 * N + c0,
                static_cast<int>(N));
  }

  // Block size for splitting n rows or columns: one block per thread. Every block packs the whole
  // shared operand again (B for row blocks, A for column blocks), so finer blocks cost real time:
  // [512, 3072] x [3072, 576] in 8 column blocks packed its 6 MB left operand 8 times.
  static int64_t grain(int64_t n) {
    const int64_t threads = poolThreads();
    return std::max<int64_t>(kMinBlock, (n + threads - 1) / threads);
  }

  void run() const {
    const int threads = poolThreads();
    if (threads == 1 || M * N * K < kParallelMacs) {
      block(0, M, 0, N);
    } else if (M >= N || N < kMinBlock * 2) {
      parallelFor(M, grain(M), [&](int64_t r0, int64_t r1) { block(r0, r1, 0, N); });
    } else {
      parallelFor(N, grain(N), [&](int64_t c0, int64_t c1) { block(0, M, c0, c1); });
    }
  }
};

}  // namespace

void sgemmBatched(const float* a, const float* b, float* c, int64_t batch, int64_t M, int64_t N, int64_t K,
                  bool transA, bool transB, int64_t aStride, int64_t bStride) {
  // A shared right-hand matrix and contiguous, untransposed left matrices: the batch is just more
  // rows of one larger GEMM, which runs far better than many small ones.
  if (batch > 1 && bStride == 0 && !transA && aStride == M * K) {
    M *= batch;
    batch = 1;
  }
  if (batch == 1) {
    Gemm3{a, b, c, M, N, K, transA, transB}.run();
    return;
  }
  const int64_t perMatrix = std::max<int64_t>(1, M * N * K);
  parallelFor(batch, std::max<int64_t>(1, kParallelMacs / perMatrix), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      Gemm3{a + i * aStride, b + i * bStride, c + i * M * N, M, N, K, transA, transB}.block(0, M, 0, N);
    }
  });
}

napi_value Gemm(napi_env env, napi_callback_info info) {
  Args args(env, info);
  const int64_t batch = args.i64(4), M = args.i64(5), N = args.i64(6), K = args.i64(7);
  const bool transA = args.flag(8), transB = args.flag(9);
  const int64_t aStride = args.i64(10), bStride = args.i64(11);
  if (!args.ok()) return nullptr;
  if (batch < 1 || M < 0 || N < 0 || K < 0 || aStride < 0 || bStride < 0 || M > INT32_MAX || N > INT32_MAX ||
      K > INT32_MAX) {
    args.fail("gemm: sizes must be non-negative 32-bit integers and batch >= 1");
    return nullptr;
  }
  const float* a = args.ptr<float>(1, span(batch, aStride, M * K));
  const float* b = args.ptr<float>(2, span(batch, bStride, K * N));
  float* c = args.ptr<float>(3, batch * M * N);
  if (!args.ok()) return nullptr;
  if (M == 0 || N == 0) return nullptr;
  if (K == 0) {
    std::fill(c, c + batch * M * N, 0.0f);
    return nullptr;
  }
  sgemmBatched(a, b, c, batch, M, N, K, transA, transB, aStride, bStride);
  return nullptr;
}

}  // namespace grpo
