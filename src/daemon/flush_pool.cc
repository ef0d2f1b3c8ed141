#include "flush_pool.h"

namespace envelopefs {

FlushPool::FlushPool(size_t threads) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

FlushPool::~FlushPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

void FlushPool::Run(size_t n, const std::function<void(size_t)>& job) {
  if (n == 0) return;
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &job;
  next_ = 0;
  count_ = n;
  finished_ = 0;
  start_.notify_all();
  done_.wait(lock, [&] { return finished_ == count_; });
  job_ = nullptr;
  count_ = 0;
}

void FlushPool::Work() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    // Jobs are left only during a Run (count_ is 0 between runs), whenever this thread started.
    start_.wait(lock, [&] { return stop_ || next_ < count_; });
    if (stop_) return;
    const size_t i = next_++;
    const auto* job = job_;
    lock.unlock();
    (*job)(i);
    lock.lock();
    if (++finished_ == count_) done_.notify_one();  // the last job of the run wakes Run()
  }
}

}  // namespace envelopefs
