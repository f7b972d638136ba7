#include "pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace grpo {

namespace {

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long a helper keeps polling for the next job before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(100);
// Chunks per thread: finer than one per thread, so a helper that the OS has descheduled (the
// machine may run other work) holds back little, and the caller takes the rest.
constexpr int64_t kChunksPerThread = 4;

// The claim word packs the job id, its chunk count and the next unclaimed chunk, so a helper
// that wakes late can never claim a chunk of a job other than the one it read the id of: every
// claim is a compare-and-swap of the whole word.
constexpr uint64_t jobOf(uint64_t w) { return w >> 32; }
constexpr uint64_t chunksOf(uint64_t w) { return (w >> 16) & 0xffff; }
constexpr uint64_t nextOf(uint64_t w) { return w & 0xffff; }

class Pool {
 public:
  explicit Pool(int threads) : threads_(std::max(1, threads)) {
    for (int i = 1; i < threads_; i++) std::thread([this] { workerLoop(); }).detach();
  }

  int threads() const { return threads_; }

  void run(int64_t n, int64_t grain, const RangeFn& fn) {
    const int64_t byGrain = grain > 0 ? n / grain : n;
    const int64_t chunks = std::min<int64_t>({byGrain, threads_ * kChunksPerThread, 0xffff});
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (threads_ == 1 || chunks <= 1 || !lock.owns_lock()) {
      fn(0, n);
      return;
    }
    fn_ = &fn;
    n_ = n;
    done_.store(0, std::memory_order_relaxed);
    const uint64_t job = (jobOf(claim_.load(std::memory_order_relaxed)) + 1) & 0xffffffff;
    claim_.store((job << 32) | (static_cast<uint64_t>(chunks) << 16), std::memory_order_seq_cst);
    jobId_.store(job, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) jobId_.notify_all();
    work(job);
    for (int spins = 0; done_.load(std::memory_order_acquire) != chunks; spins++) {
      // a helper is inside a chunk; if it has lost its core, give ours up so it can finish
      if (spins > 2000) std::this_thread::yield();
      else cpuRelax();
    }
    fn_ = nullptr;
  }

 private:
  void work(uint64_t job) {
    for (;;) {
      uint64_t w = claim_.load(std::memory_order_acquire);
      if (jobOf(w) != job || nextOf(w) >= chunksOf(w)) return;
      if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
      // the chunk is ours and not done, so the caller is still inside this job: fn_/n_ are valid
      const int64_t chunks = static_cast<int64_t>(chunksOf(w)), i = static_cast<int64_t>(nextOf(w));
      const int64_t begin = n_ * i / chunks, end = n_ * (i + 1) / chunks;
      if (begin < end) (*fn_)(begin, end);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void workerLoop() {
    uint64_t seen = jobId_.load(std::memory_order_acquire);
    for (;;) {
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      uint64_t job;
      while ((job = jobId_.load(std::memory_order_acquire)) == seen) {
        cpuRelax();
        if (std::chrono::steady_clock::now() < deadline) continue;
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (jobId_.load(std::memory_order_seq_cst) == seen) jobId_.wait(seen, std::memory_order_seq_cst);
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = job;
      work(job);
    }
  }

  const int threads_;
  std::mutex busy_;
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint64_t> jobId_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  const RangeFn* fn_ = nullptr;
  int64_t n_ = 0;
};

int requestedThreads = 0;
Pool* pool = nullptr;
std::once_flag poolOnce;

Pool& getPool() {
  std::call_once(poolOnce, [] {
    int n = requestedThreads;
    if (n <= 0) {
      const char* env = std::getenv("GRPO_THREADS");
      n = env ? std::atoi(env) : 0;
    }
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    // Never destroyed: helpers are detached and the process may exit while they sleep.
    pool = new Pool(std::min(n, 64));
  });
  return *pool;
}

}  // namespace

int poolThreads() { return getPool().threads(); }

void setPoolThreads(int n) { requestedThreads = n; }

void parallelFor(int64_t n, int64_t grain, const RangeFn& fn) {
  if (n <= 0) return;
  getPool().run(n, grain, fn);
}

}  // namespace grpo
