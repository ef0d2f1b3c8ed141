// FlushPool — a small fixed set of threads that run one job per file concurrently (the Sealer's
// fdatasync of each closed file, then its sealed record).
//
// Concurrent fdatasyncs cost about one journal commit on ext4 (jbd2 groups the transactions they
// wait for), where one thread would pay a commit per file. The threads are started once and wait
// between runs. Thread-safe: Run() calls are serialized; a job must not call Run().
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace envelopefs {

class FlushPool {
 public:
  explicit FlushPool(size_t threads);
  ~FlushPool();
  FlushPool(const FlushPool&) = delete;
  FlushPool& operator=(const FlushPool&) = delete;

  // Runs job(i) for every i in [0, n) on the pool's threads; returns when all have returned.
  void Run(size_t n, const std::function<void(size_t)>& job);

 private:
  void Work();

  std::mutex run_mutex_;  // one Run at a time
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t next_ = 0, count_ = 0, finished_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace envelopefs
