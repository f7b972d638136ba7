#include "napi-util.h"

#include <cmath>

namespace grpo {

Args::Args(napi_env env, napi_callback_info info) : env_(env) {
  if (napi_get_cb_info(env, info, &argc_, argv_, nullptr, nullptr) != napi_ok || argc_ < 1) {
    fail("expected the wasm heap (ArrayBuffer) or null as the first argument");
    return;
  }
  napi_valuetype type = napi_undefined;
  napi_typeof(env, argv_[0], &type);
  if (type == napi_null) return;  // no heap: every tensor argument is a typed array of its own
  bool isBuffer = false;
  napi_is_arraybuffer(env, argv_[0], &isBuffer);
  void* data = nullptr;
  if (!isBuffer || napi_get_arraybuffer_info(env, argv_[0], &data, &heapBytes_) != napi_ok) {
    fail("first argument must be the wasm heap ArrayBuffer or null");
    return;
  }
  heap_ = static_cast<uint8_t*>(data);
}

bool Args::base(size_t i, size_t elemBytes, uint8_t** start, int64_t* offset, uint64_t* limit) {
  if (!ok_) return false;
  bool isTyped = false;
  if (i < argc_ && napi_is_typedarray(env_, argv_[i], &isTyped) == napi_ok && isTyped) {
    napi_typedarray_type type;
    size_t length = 0, byteOffset = 0;
    void* data = nullptr;
    napi_value buffer;
    void* bufferData = nullptr;
    size_t bufferBytes = 0;
    if (napi_get_typedarray_info(env_, argv_[i], &type, &length, &data, &buffer, &byteOffset) != napi_ok ||
        napi_get_arraybuffer_info(env_, buffer, &bufferData, &bufferBytes) != napi_ok) {
      fail("unreadable typed array argument");
      return false;
    }
    *start = static_cast<uint8_t*>(bufferData);
    *offset = static_cast<int64_t>(byteOffset);
    *limit = bufferBytes;
  } else {
    *offset = i64(i);
    if (!ok_) return false;
    if (heap_ == nullptr) {
      fail("a byte offset needs the heap as the first argument; pass a typed array instead");
      return false;
    }
    *start = heap_;
    *limit = heapBytes_;
  }
  if (*offset < 0 || *offset % static_cast<int64_t>(elemBytes) != 0) {
    fail("negative or misaligned heap offset");
    return false;
  }
  return true;
}

void Args::fail(const char* message) {
  if (ok_) napi_throw_range_error(env_, "GRPO_ERR_NATIVE_ARGS", message);
  ok_ = false;
}

double Args::f64(size_t i) {
  double v = 0;
  if (!ok_) return 0;
  if (i >= argc_ || napi_get_value_double(env_, argv_[i], &v) != napi_ok || !std::isfinite(v)) {
    fail("missing or non-numeric argument");
    return 0;
  }
  return v;
}

int64_t Args::i64(size_t i) {
  int64_t v = 0;
  if (!ok_) return 0;
  if (i >= argc_ || napi_get_value_int64(env_, argv_[i], &v) != napi_ok) {
    fail("missing or non-integer argument");
    return 0;
  }
  return v;
}

void* Args::region(size_t i, int64_t count, size_t elemBytes) {
  uint8_t* start = nullptr;
  int64_t offset = 0;
  uint64_t limit = 0;
  if (!base(i, elemBytes, &start, &offset, &limit)) return nullptr;
  if (count < 0) {
    fail("negative element count");
    return nullptr;
  }
  const uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(count) * elemBytes;
  if (end > limit) {
    fail("tensor region lies outside its buffer");
    return nullptr;
  }
  return start + offset;
}

const int32_t* Args::i32array(size_t i, size_t* length) {
  *length = 0;
  if (!ok_) return nullptr;
  bool isTyped = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (i >= argc_ || napi_is_typedarray(env_, argv_[i], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env_, argv_[i], &type, length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array) {
    fail("expected an Int32Array argument");
    return nullptr;
  }
  return static_cast<const int32_t*>(data);
}

void* Args::strided(size_t i, int rank, const int32_t* shape, const int32_t* strides, size_t elemBytes) {
  uint8_t* heap = nullptr;
  int64_t offset = 0;
  uint64_t limit = 0;
  if (!base(i, elemBytes, &heap, &offset, &limit)) return nullptr;
  int64_t lo = 0, hi = 0;  // element offsets reached, relative to the start
  for (int d = 0; d < rank; d++) {
    if (shape[d] <= 0) return heap + offset;  // empty: touches nothing
    const int64_t reach = static_cast<int64_t>(shape[d] - 1) * strides[d];
    if (reach < 0) lo += reach;
    else hi += reach;
  }
  const int64_t first = offset + lo * static_cast<int64_t>(elemBytes);
  const int64_t last = offset + (hi + 1) * static_cast<int64_t>(elemBytes);
  if (first < 0 || static_cast<uint64_t>(last) > limit) {
    fail("strided tensor region lies outside its buffer");
    return nullptr;
  }
  return heap + offset;
}

void exportFunction(napi_env env, napi_value exports, const char* name, napi_callback fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
  napi_set_named_property(env, exports, name, f);
}

}  // namespace grpo
