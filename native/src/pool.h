// A small process-wide thread pool for the addon's kernels. The calling (JS) thread takes part in
// every job, so a 2-core machine runs one helper thread. Helpers spin briefly after each job
// (TensorFlow.js issues kernels back to back, a few microseconds apart) and then sleep on a
// futex, so an idle process costs nothing. OpenBLAS is set to one thread and GEMMs are split
// here instead, so the BLAS and our own kernels never compete for the same cores.
#pragma once
#include <cstdint>
#include <functional>

namespace grpo {

using RangeFn = std::function<void(int64_t begin, int64_t end)>;

// Number of threads a job can use (helpers + the caller); at least 1.
int poolThreads();

// Sets the thread count (1 = run everything on the caller). Only before the first job.
void setPoolThreads(int n);

// Runs fn over [0, n) split into at most poolThreads() contiguous ranges of at least `grain`
// items each; returns when all ranges are done. Reentrant calls (from inside fn or from another
// JS thread while a job runs) run inline on the caller.
void parallelFor(int64_t n, int64_t grain, const RangeFn& fn);

}  // namespace grpo
