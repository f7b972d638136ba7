// Argument helpers shared by the addon's entry points. Every kernel takes the wasm heap (an
// ArrayBuffer, or null) first and then its tensors and sizes. A tensor argument is either a byte
// offset into the heap (wasm backend) or a typed array whose first element is where the tensor
// starts (the native backend: each tensor owns an ArrayBuffer, so no 4 GB heap bounds the model).
// These helpers check that every region a kernel touches lies inside its buffer, so a wrong
// offset throws a RangeError in JS instead of corrupting memory.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <cstdint>

namespace grpo {

constexpr size_t kMaxArgs = 16;

class Args {
 public:
  Args(napi_env env, napi_callback_info info);

  bool ok() const { return ok_; }
  napi_env env() const { return env_; }
  size_t count() const { return argc_; }

  // Integer argument i (a JS number); throws TypeError and returns 0 when it is not one.
  int64_t i64(size_t i);
  double f64(size_t i);
  bool flag(size_t i) { return i64(i) != 0; }

  // Pointer for tensor argument i (heap byte offset or typed array), covering `count` elements of T.
  template <typename T>
  T* ptr(size_t i, int64_t count) {
    return static_cast<T*>(region(i, count, sizeof(T)));
  }

  // Int32Array argument i (shapes and strides); sets *length to its element count.
  const int32_t* i32array(size_t i, size_t* length);

  // Checks that every element a strided walk touches lies inside the heap: the walk starts at
  // the byte offset in argument i, has `rank` dimensions of `shape` and element `strides` (which
  // may be negative), each element `elemBytes` wide. Returns the start pointer.
  void* strided(size_t i, int rank, const int32_t* shape, const int32_t* strides, size_t elemBytes);

  // Throws a RangeError (once) and marks the call failed.
  void fail(const char* message);

 private:
  void* region(size_t i, int64_t count, size_t elemBytes);
  // The buffer behind tensor argument i: its start, the tensor's byte offset in it and its size.
  bool base(size_t i, size_t elemBytes, uint8_t** start, int64_t* offset, uint64_t* limit);

  napi_env env_;
  napi_value argv_[kMaxArgs];
  size_t argc_ = kMaxArgs;
  uint8_t* heap_ = nullptr;
  size_t heapBytes_ = 0;
  bool ok_ = true;
};

// Registers `fn` as property `name` of `exports`.
void exportFunction(napi_env env, napi_value exports, const char* name, napi_callback fn);

}  // namespace grpo
