// The rollout decoder: the decoder forward of every supported family (Llama, Qwen2, Qwen3, Gemma2;
// src/model/architecture.ts) for sampling, owning its weights and KV cache in native memory and
// running a whole step of the model (every layer, the head and the log-softmax) for all rows in one
// call. It does not touch TensorFlow.js memory, so it works under any tfjs backend.
// A separate addon (grpo_decode.node) from the engine's kernels: see src/model/native-decoder.ts.
// This file holds the N-API entry points and argument checks; the model step is decode-forward.cc.
//
//   decoderNew(dims Int32Array [V, d, I, L, nH, nKV, hd], eps, weights Float32Array[],
//              arch Float64Array [qkvBias, oBias, mlpBias, qkNorm, sandwich, gelu, embedScale,
//              queryScale, attnCap, finalCap], windows Int32Array [L]) -> handle
//     flags are 0/1; queryScale is the family's query scale already divided by attnCap (when
//     there is one); caps are 0 when off; windows[l] is layer l's sliding window, 0 = none.
//     weights in this order: embed [V, d]; per layer input_layernorm [d], q [nH hd, d],
//     k [nKV hd, d], v [nKV hd, d], (qkvBias: q, k, v biases), (qkNorm: q_norm [hd], k_norm [hd]),
//     o [d, nH hd], (oBias: o bias [d]), (sandwich: post_attention_layernorm [d]), the norm before
//     the MLP [d], (sandwich: post_feedforward_layernorm [d]), gate [I, d], up [I, d],
//     (mlpBias: gate, up biases [I]), down [d, I], (mlpBias: down bias [d]); model.norm [d];
//     head [V, d] (the embedding again when tied). Norm weights come with Gemma's + 1 added.
//     The weights are copied (q/k/v and gate/up concatenated), so the caller may drop its arrays.
//   cacheNew(decoder, rows, maxLen, invFreq Float32Array [hd / 2]) -> handle: keys and values of
//     `rows` sequences of up to maxLen positions, [rows, L, nKV, maxLen, hd] each, plus the rotary
//     table for maxLen from the (possibly rope_scaling-adjusted) inverse frequencies.
//   forward(decoder, cache, slots Int32Array[n], counts Int32Array[n], tokens Int32Array, out
//     Float32Array[n V], invTemperature): appends counts[i] tokens to row slots[i] (tokens in
//     entry order) at the positions after what the row holds, and writes the log-softmax of
//     (logits of its last new token) * invTemperature into out[i V ...]. counts 1 is a decode
//     step; a whole prompt is a prefill. Rows not named are untouched.
//   copyRow(cache, src, dst): row dst takes row src's keys, values and length (a shared prompt).
//   resetRow(cache, slot): row slot becomes empty (a new sequence starts there).
//   free(handle): releases a decoder or cache now instead of at garbage collection (a call
//     with a freed handle then throws).
//
// The numbers follow src/model/llama-forward.ts: RMSNorm x * rsqrt(mean(x^2) + eps) * w, HF
// rotate_half rotary embeddings with q scaled through its coefficients, grouped-query attention
// over the row's cached positions only (the reference masks padding and out-of-window keys to
// exp(-1e9) = 0), SwiGLU or GeGLU, tied or separate head, soft-capping. Single-threaded: OpenBLAS
// runs with one thread (see Init), and at rollout sizes the per-call overhead, not the
// arithmetic, is what this path removes.
#include <cblas.h>
#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "decode.h"

namespace grpo_decode {

namespace {

// A handle is a JS external around a Box; free() empties the box early, the finalizer frees the
// box (and whatever is still in it) when the external is collected.
enum class Kind { Decoder, Cache };
// V8 is told each handle's size, so dropped decoders of old policy versions get collected soon.
struct Box {
  Kind kind;
  void* p;
  int64_t bytes;
};

// The last freed cache, kept whole for the next cache it can hold. A rollout worker opens a cache
// per weights version (several a second in a small model's run), its length set by that run's
// first prompt: fresh buffers come from mmap, and every first write to one of their pages faults
// (the shared-prompt row copies, the prefill's cache writes, the scratch of forward()), where a
// reused cache's are already mapped. A spare serves a cache of up to its capacity and at least half
// of it, so prompts of varying length keep hitting it; one slot: at most one cache's worth of
// memory is held beyond what is live, per JS thread.
thread_local std::unique_ptr<Cache> spare;  // per JS thread: worker_threads each have their own

void keepSpare(Cache* c) { spare.reset(c); }

// A cache whose k and v hold at least `size` floats each: the spare when it fits, else a new one.
Cache* takeCache(int64_t size) {
  if (spare && spare->cap >= size && spare->cap <= 2 * size) return spare.release();  // contents are stale: only positions below a row's len are read
  auto* c = new Cache();
  c->cap = size;
  c->k.reset(new float[size]);
  c->v.reset(new float[size]);
  return c;
}

void release(napi_env env, Box* box) {
  if (box->p == nullptr) return;
  if (box->kind == Kind::Decoder) delete static_cast<Decoder*>(box->p);
  else {
    Cache* c = static_cast<Cache*>(box->p);
    keepSpare(c);
  }
  box->p = nullptr;
  int64_t total = 0;
  napi_adjust_external_memory(env, -box->bytes, &total);
}

void finalize(napi_env env, void* data, void*) {
  Box* box = static_cast<Box*>(data);
  release(env, box);
  delete box;
}

napi_value throwError(napi_env env, const char* message) {
  napi_throw_range_error(env, "GRPO_ERR_NATIVE_ARGS", message);
  return nullptr;
}

template <typename T>
bool typedArray(napi_env env, napi_value value, napi_typedarray_type want, T** data, size_t* length) {
  bool isTyped = false;
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_is_typedarray(env, value, &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok || type != want) {
    return false;
  }
  *data = static_cast<T*>(raw);
  return true;
}

void* unbox(napi_env env, napi_value value, Kind kind) {
  void* data = nullptr;
  napi_valuetype t;
  if (napi_typeof(env, value, &t) != napi_ok || t != napi_external || napi_get_value_external(env, value, &data) != napi_ok) {
    return nullptr;
  }
  Box* box = static_cast<Box*>(data);
  return box->kind == kind ? box->p : nullptr;
}

napi_value wrap(napi_env env, Kind kind, void* p, int64_t bytes) {
  napi_value out;
  napi_create_external(env, new Box{kind, p, bytes}, finalize, nullptr, &out);
  int64_t total = 0;
  napi_adjust_external_memory(env, bytes, &total);
  return out;
}

napi_value DecoderNew(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t* dims = nullptr;
  size_t nd = 0;
  double eps = 0;
  double* arch = nullptr;
  size_t na = 0;
  int32_t* windows = nullptr;
  size_t nw = 0;
  if (argc < 5 || !typedArray(env, argv[0], napi_int32_array, &dims, &nd) || nd != 7 ||
      napi_get_value_double(env, argv[1], &eps) != napi_ok || !typedArray(env, argv[3], napi_float64_array, &arch, &na) ||
      na != 10 || !typedArray(env, argv[4], napi_int32_array, &windows, &nw)) {
    return throwError(env, "decoderNew(dims Int32Array[7], eps, weights Float32Array[], arch Float64Array[10], windows Int32Array[L])");
  }
  for (size_t i = 0; i < 7; i++) {
    if (dims[i] < 1) return throwError(env, "decoderNew: every dimension must be >= 1");
  }
  if (nw != (size_t)dims[3]) return throwError(env, "decoderNew: windows must hold one entry per layer");
  for (size_t i = 0; i < nw; i++) {
    if (windows[i] < 0) return throwError(env, "decoderNew: a window must be >= 0 (0 = none)");
  }
  for (size_t i = 6; i < 10; i++) {
    if (!std::isfinite(arch[i]) || arch[i] < 0) return throwError(env, "decoderNew: scales and caps must be finite and >= 0");
  }
  const bool qkvBias = arch[0] != 0, oBias = arch[1] != 0, mlpBias = arch[2] != 0, qkNorm = arch[3] != 0, sandwich = arch[4] != 0;
  auto* dec = new Decoder();
  dec->V = dims[0];
  dec->d = dims[1];
  dec->I = dims[2];
  dec->L = dims[3];
  dec->nH = dims[4];
  dec->nKV = dims[5];
  dec->hd = dims[6];
  dec->eps = (float)eps;
  dec->gelu = arch[5] != 0;
  dec->embedScale = (float)arch[6];
  dec->queryScale = (float)arch[7];
  dec->attnCap = (float)arch[8];
  dec->finalCap = (float)arch[9];
  const int64_t V = dec->V, d = dec->d, I = dec->I, hd = dec->hd, q = (int64_t)dec->nH * hd, kv = (int64_t)dec->nKV * hd;
  if (dec->nH % dec->nKV != 0 || dec->hd % 2 != 0) {
    delete dec;
    return throwError(env, "decoderNew: nH must be a multiple of nKV and hd even");
  }
  const uint32_t perLayer = 9 + 3 * qkvBias + 2 * qkNorm + oBias + 2 * sandwich + 3 * mlpBias;
  uint32_t count = 0;
  bool isArray = false;
  napi_is_array(env, argv[2], &isArray);
  if (!isArray || napi_get_array_length(env, argv[2], &count) != napi_ok || count != 3 + perLayer * (uint32_t)dec->L) {
    delete dec;
    return throwError(env, "decoderNew: weights must hold 3 + L x (weights per layer of this arch) arrays");
  }
  uint32_t next = 0;
  bool ok = true;
  // appends weight array `next` (which must hold `n` floats) to dst
  auto take = [&](std::vector<float>& dst, int64_t n) {
    if (!ok) return;
    napi_value item;
    float* data = nullptr;
    size_t len = 0;
    if (napi_get_element(env, argv[2], next++, &item) != napi_ok ||
        !typedArray(env, item, napi_float32_array, &data, &len) || (int64_t)len != n) {
      ok = false;
      return;
    }
    dst.insert(dst.end(), data, data + n);
  };
  take(dec->embed, V * d);
  dec->layers.resize(dec->L);
  for (int i = 0; i < dec->L; i++) {
    Layer& l = dec->layers[i];
    l.window = windows[i];
    take(l.inNorm, d);
    take(l.wqkv, q * d);
    take(l.wqkv, kv * d);
    take(l.wqkv, kv * d);
    if (qkvBias) {
      take(l.bqkv, q);
      take(l.bqkv, kv);
      take(l.bqkv, kv);
    }
    if (qkNorm) {
      take(l.qNorm, hd);
      take(l.kNorm, hd);
    }
    take(l.wo, d * q);
    if (oBias) take(l.bo, d);
    if (sandwich) take(l.attnOutNorm, d);
    take(l.mlpNorm, d);
    if (sandwich) take(l.mlpOutNorm, d);
    take(l.wgu, I * d);
    take(l.wgu, I * d);
    if (mlpBias) {
      take(l.bgu, I);
      take(l.bgu, I);
    }
    take(l.wdown, d * I);
    if (mlpBias) take(l.bdown, d);
  }
  take(dec->norm, d);
  take(dec->head, V * d);
  if (!ok) {
    delete dec;
    return throwError(env, "decoderNew: weight array missing, not a Float32Array, or of the wrong size");
  }
  int64_t floats = (int64_t)dec->embed.size() + dec->norm.size() + dec->head.size();
  for (const auto& l : dec->layers) {
    for (const auto* v : {&l.inNorm, &l.wqkv, &l.bqkv, &l.qNorm, &l.kNorm, &l.wo, &l.bo, &l.attnOutNorm, &l.mlpNorm,
                          &l.mlpOutNorm, &l.wgu, &l.bgu, &l.wdown, &l.bdown}) {
      floats += v->size();
    }
  }
  return wrap(env, Kind::Decoder, dec, floats * (int64_t)sizeof(float));
}

napi_value CacheNew(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  const Decoder* dec = argc >= 4 ? static_cast<Decoder*>(unbox(env, argv[0], Kind::Decoder)) : nullptr;
  int32_t rows = 0, maxLen = 0;
  float* invFreq = nullptr;
  size_t nf = 0;
  if (dec == nullptr || napi_get_value_int32(env, argv[1], &rows) != napi_ok ||
      napi_get_value_int32(env, argv[2], &maxLen) != napi_ok || !typedArray(env, argv[3], napi_float32_array, &invFreq, &nf) ||
      rows < 1 || maxLen < 1 || nf != (size_t)dec->hd / 2) {
    return throwError(env, "cacheNew(decoder, rows >= 1, maxLen >= 1, invFreq Float32Array[hd / 2])");
  }
  const int64_t size = (int64_t)rows * dec->L * dec->nKV * maxLen * dec->hd;
  Cache* c = takeCache(size);
  c->rows = rows;
  c->maxLen = maxLen;
  c->L = dec->L;
  c->nKV = dec->nKV;
  c->hd = dec->hd;
  c->len.assign(rows, 0);
  // the rotary table exactly as rope.ts builds it (float32 angles from rope.ts's inverse frequencies)
  const int hd = dec->hd, half = hd / 2;
  c->cosT.resize((int64_t)maxLen * half);
  c->sinT.resize((int64_t)maxLen * half);
  for (int i = 0; i < half; i++) {
    const float inv = invFreq[i];
    for (int p = 0; p < maxLen; p++) {
      const float angle = (float)((double)p * (double)inv);
      c->cosT[(int64_t)p * half + i] = (float)std::cos((double)angle);
      c->sinT[(int64_t)p * half + i] = (float)std::sin((double)angle);
    }
  }
  return wrap(env, Kind::Cache, c, (2 * c->cap + 2 * (int64_t)maxLen * half) * (int64_t)sizeof(float));
}

napi_value Forward(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 7) return throwError(env, "forward(decoder, cache, slots, counts, tokens, out, invTemperature)");
  const Decoder* dec = static_cast<Decoder*>(unbox(env, argv[0], Kind::Decoder));
  Cache* cache = static_cast<Cache*>(unbox(env, argv[1], Kind::Cache));
  int32_t *slots = nullptr, *counts = nullptr, *tokens = nullptr;
  float* out = nullptr;
  size_t nSlots = 0, nCounts = 0, nTokens = 0, nOut = 0;
  double invT = 0;
  if (dec == nullptr || cache == nullptr) return throwError(env, "forward: decoder or cache was freed or is not one");
  if (!typedArray(env, argv[2], napi_int32_array, &slots, &nSlots) ||
      !typedArray(env, argv[3], napi_int32_array, &counts, &nCounts) ||
      !typedArray(env, argv[4], napi_int32_array, &tokens, &nTokens) ||
      !typedArray(env, argv[5], napi_float32_array, &out, &nOut) || napi_get_value_double(env, argv[6], &invT) != napi_ok ||
      !std::isfinite(invT) || invT <= 0) {
    return throwError(env, "forward: slots, counts, tokens Int32Array, out Float32Array, invTemperature > 0");
  }
  if (cache->L != dec->L || cache->nKV != dec->nKV || cache->hd != dec->hd) {
    return throwError(env, "forward: the cache was made for another model shape");
  }
  if (nSlots != nCounts || nOut < nSlots * (size_t)dec->V) return throwError(env, "forward: slots/counts/out sizes disagree");
  std::vector<uint8_t> seen(cache->rows, 0);
  int64_t N = 0;
  for (size_t e = 0; e < nSlots; e++) {
    const int32_t s = slots[e];
    if (s < 0 || s >= cache->rows || seen[s]) return throwError(env, "forward: slot out of range or named twice");
    seen[s] = 1;
    if (counts[e] < 1 || (int64_t)cache->len[s] + counts[e] > cache->maxLen) {
      return throwError(env, "forward: a count is < 1 or the row would exceed the cache's maxLen");
    }
    N += counts[e];
  }
  if ((int64_t)nTokens != N) return throwError(env, "forward: tokens must hold sum(counts) ids");
  for (size_t i = 0; i < nTokens; i++) {
    if (tokens[i] < 0 || tokens[i] >= dec->V) return throwError(env, "forward: token id out of range");
  }
  if (nSlots > 0) forwardRows(*dec, *cache, slots, counts, (int)nSlots, tokens, (int)N, out, (float)invT);
  return nullptr;
}

napi_value CopyRow(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  Cache* c = argc >= 3 ? static_cast<Cache*>(unbox(env, argv[0], Kind::Cache)) : nullptr;
  int32_t src = -1, dst = -1;
  if (c == nullptr || napi_get_value_int32(env, argv[1], &src) != napi_ok || napi_get_value_int32(env, argv[2], &dst) != napi_ok ||
      src < 0 || dst < 0 || src >= c->rows || dst >= c->rows) {
    return throwError(env, "copyRow(cache, src, dst): rows in range");
  }
  if (src == dst) return nullptr;
  const int64_t n = (int64_t)c->len[src] * c->hd;
  for (int l = 0; l < c->L; l++) {
    for (int h = 0; h < c->nKV; h++) {
      std::memcpy(c->at(c->k, dst, l, h, 0), c->at(c->k, src, l, h, 0), n * sizeof(float));
      std::memcpy(c->at(c->v, dst, l, h, 0), c->at(c->v, src, l, h, 0), n * sizeof(float));
    }
  }
  c->len[dst] = c->len[src];
  return nullptr;
}

napi_value ResetRow(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  Cache* c = argc >= 2 ? static_cast<Cache*>(unbox(env, argv[0], Kind::Cache)) : nullptr;
  int32_t slot = -1;
  if (c == nullptr || napi_get_value_int32(env, argv[1], &slot) != napi_ok || slot < 0 || slot >= c->rows) {
    return throwError(env, "resetRow(cache, slot): slot in range");
  }
  c->len[slot] = 0;
  return nullptr;
}

napi_value Free(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  void* data = nullptr;
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, argv[0], &data) != napi_ok) {
    return throwError(env, "free(handle)");
  }
  release(env, static_cast<Box*>(data));
  return nullptr;
}

void exportFunction(napi_env env, napi_value exports, const char* name, napi_callback fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
  napi_set_named_property(env, exports, name, f);
}

napi_value Init(napi_env env, napi_value exports) {
  openblas_set_num_threads(1);  // decode GEMMs are small; threads would cost more than they save
  exportFunction(env, exports, "decoderNew", DecoderNew);
  exportFunction(env, exports, "cacheNew", CacheNew);
  exportFunction(env, exports, "forward", Forward);
  exportFunction(env, exports, "copyRow", CopyRow);
  exportFunction(env, exports, "resetRow", ResetRow);
  exportFunction(env, exports, "free", Free);
  return exports;
}

}  // namespace

}  // namespace grpo_decode

NAPI_MODULE(NODE_GYP_MODULE_NAME, grpo_decode::Init)
