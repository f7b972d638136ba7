# The engine's native kernels: a synchronous N-API addon that runs on TensorFlow.js wasm-heap
# memory in place. GEMM goes to Debian's OpenBLAS (libopenblas-dev, pthread flavour); the
# elementwise, data-movement, reduction and softmax kernels are our own C++, vectorised for
# AVX-512/AVX2 with runtime dispatch (src/simd.h). Built by scripts/build-native.sh:
# node-gyp rebuild --nodedir=<Node's prefix>, so no headers are downloaded. A second target,
# grpo_decode, is the rollout decoder (src/decode.cc): its own weights and KV cache, no tfjs memory.
{
  "variables": {
    "multiarch": "<!(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  },
  "targets": [
    {
      "target_name": "grpo_native",
      "sources": [
        "src/addon.cc",
        "src/napi-util.cc",
        "src/pool.cc",
        "src/gemm.cc",
        "src/elementwise.cc",
        "src/copy.cc",
        "src/reduce.cc",
        "src/fused.cc"
      ],
      "include_dirs": ["/usr/include/<(multiarch)/openblas-pthread"],
      "libraries": [
        "-L/usr/lib/<(multiarch)/openblas-pthread",
        "-Wl,-rpath,/usr/lib/<(multiarch)/openblas-pthread",
        "-lopenblas",
        "-lpthread"
      ],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-psabi"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "grpo_decode",
      "sources": ["src/decode.cc", "src/decode-forward.cc"],
      "include_dirs": ["/usr/include/<(multiarch)/openblas-pthread"],
      "libraries": [
        "-L/usr/lib/<(multiarch)/openblas-pthread",
        "-Wl,-rpath,/usr/lib/<(multiarch)/openblas-pthread",
        "-lopenblas",
        "-lpthread"
      ],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros", "-Wall", "-Wextra", "-Wno-psabi"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
