// Module registration: exports the kernel functions and a few facts about the build.
#include <cblas.h>

#include "kernels.h"
#include "napi-util.h"
#include "pool.h"

extern "C" char* openblas_get_corename(void);

namespace grpo {

namespace {

// info() -> { blasConfig, blasCore, threads }: what OpenBLAS was built as, the CPU kernels it
// picked at load time (OPENBLAS_CORETYPE overrides it), and the threads our kernels use.
napi_value Info(napi_env env, napi_callback_info) {
  napi_value out, config, core, threads;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config);
  napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &core);
  napi_create_int32(env, poolThreads(), &threads);
  napi_set_named_property(env, out, "blasConfig", config);
  napi_set_named_property(env, out, "blasCore", core);
  napi_set_named_property(env, out, "threads", threads);
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  // GEMMs are split over our own pool (see gemm.cc); OpenBLAS's threads would only compete with it.
  openblas_set_num_threads(1);
  exportFunction(env, exports, "info", Info);
  exportFunction(env, exports, "gemm", Gemm);
  exportFunction(env, exports, "unary", Unary);
  exportFunction(env, exports, "binary", Binary);
  exportFunction(env, exports, "copy", Copy);
  exportFunction(env, exports, "gather", Gather);
  exportFunction(env, exports, "segmentSum", SegmentSum);
  exportFunction(env, exports, "cast", Cast);
  exportFunction(env, exports, "reduce", ReduceAxes);
  exportFunction(env, exports, "softmax", Softmax);
  exportFunction(env, exports, "adamw", AdamW);
  exportFunction(env, exports, "swiglu", SwiGLU);
  exportFunction(env, exports, "swigluGrad", SwiGLUGrad);
  exportFunction(env, exports, "rmsNorm", RmsNorm);
  exportFunction(env, exports, "rmsNormGrad", RmsNormGrad);
  exportFunction(env, exports, "rope", Rope);
  exportFunction(env, exports, "ropeGrad", RopeGrad);
  return exports;
}

}  // namespace

}  // namespace grpo

NAPI_MODULE(NODE_GYP_MODULE_NAME, grpo::Init)
