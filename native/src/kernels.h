// Entry points of the addon's kernels (one N-API function each) and the C++ routines they share.
// Every entry point takes the wasm heap ArrayBuffer first; see each source file for the rest.
#pragma once
#include <node_api.h>

#include <cstdint>

namespace grpo {

void sgemmBatched(const float* a, const float* b, float* c, int64_t batch, int64_t M, int64_t N, int64_t K,
                  bool transA, bool transB, int64_t aStride, int64_t bStride);

napi_value Gemm(napi_env env, napi_callback_info info);          // gemm.cc
napi_value Unary(napi_env env, napi_callback_info info);         // elementwise.cc
napi_value Binary(napi_env env, napi_callback_info info);        // elementwise.cc
napi_value Copy(napi_env env, napi_callback_info info);          // copy.cc
napi_value Gather(napi_env env, napi_callback_info info);        // copy.cc
napi_value SegmentSum(napi_env env, napi_callback_info info);    // copy.cc
napi_value Cast(napi_env env, napi_callback_info info);          // copy.cc
napi_value ReduceAxes(napi_env env, napi_callback_info info);    // reduce.cc
napi_value Softmax(napi_env env, napi_callback_info info);       // reduce.cc
napi_value AdamW(napi_env env, napi_callback_info info);         // fused.cc
napi_value SwiGLU(napi_env env, napi_callback_info info);        // fused.cc
napi_value SwiGLUGrad(napi_env env, napi_callback_info info);    // fused.cc
napi_value RmsNorm(napi_env env, napi_callback_info info);       // fused.cc
napi_value RmsNormGrad(napi_env env, napi_callback_info info);   // fused.cc
napi_value Rope(napi_env env, napi_callback_info info);          // fused.cc
napi_value RopeGrad(napi_env env, napi_callback_info info);      // fused.cc

}  // namespace grpo
