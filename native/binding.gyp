# The engine's native kernels: a synchronous N-API addon that runs on TensorFlow.js wasm-heap
# memory in place. GEMM goes to Debian's OpenBLAS (libopenblas-dev, pthread flavour); the
# elementwise, softmax and reduction kernels are our own C++ (AVX-512 where the CPU has it).
# Built by scripts/build-native.sh: node-gyp rebuild --nodedir=/usr (no header download).
{
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
        "src/reduce.cc"
      ],
      "include_dirs": ["/usr/include/x86_64-linux-gnu/openblas-pthread"],
      "libraries": [
        "-L/usr/lib/x86_64-linux-gnu/openblas-pthread",
        "-Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-pthread",
        "-lopenblas",
        "-lpthread"
      ],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
