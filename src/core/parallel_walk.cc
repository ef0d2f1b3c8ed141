// ParallelWalk — see parallel_walk.h.
#include "envelopefs/parallel_walk.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace envelopefs {
namespace {

struct Item {
  CipherEntry entry;
  uint64_t index = 0;
};

// Thrown through WalkCipherDir to stop it once a worker has failed.
struct Stopped {};

// A bounded multi-consumer queue of walked entries. Thread-safe.
class EntryQueue {
 public:
  explicit EntryQueue(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

  // Waits for room; false if the walk is to stop (a failure).
  bool Push(Item&& item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return failed_ || items_.size() < capacity_; });
    if (failed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }

  // Waits for an entry; false once the walk is over and everything was taken, or on a failure.
  bool Pop(Item* item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return failed_ || closed_ || !items_.empty(); });
    if (failed_ || items_.empty()) return false;
    *item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }

  // The walk is over: workers take what is left, then stop.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

  // Records the first failure; everyone stops as soon as they look.
  void Fail(std::exception_ptr error) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::move(error);
    failed_ = true;
    items_.clear();
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  std::exception_ptr error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Item> items_;
  bool closed_ = false;
  bool failed_ = false;
  std::exception_ptr error_;
};

}  // namespace

uint64_t ParallelWalk(const std::filesystem::path& cipher_dir, const NameTransform& names,
                      const ParallelWalkOptions& options,
                      const std::function<bool(const CipherEntry&)>& wanted,
                      const std::function<void(unsigned, const CipherEntry&, uint64_t)>& work,
                      const std::function<void(unsigned)>& worker_done) {
  uint64_t walked = 0;
  if (options.jobs <= 1) {
    WalkCipherDir(cipher_dir, names, [&](const CipherEntry& e) {
      const uint64_t index = walked++;
      if (!wanted || wanted(e)) work(0, e, index);
    });
    if (worker_done) worker_done(0);
    return walked;
  }

  EntryQueue queue(options.queue_capacity);
  std::vector<std::thread> workers;
  workers.reserve(options.jobs);
  for (unsigned w = 0; w < options.jobs; ++w) {
    workers.emplace_back([&, w] {
      try {
        Item item;
        while (queue.Pop(&item)) work(w, item.entry, item.index);
        if (worker_done) worker_done(w);
      } catch (...) {
        queue.Fail(std::current_exception());
      }
    });
  }
  try {
    WalkCipherDir(cipher_dir, names, [&](const CipherEntry& e) {
      const uint64_t index = walked++;
      if (wanted && !wanted(e)) return;
      if (!queue.Push(Item{e, index})) throw Stopped{};
    });
  } catch (const Stopped&) {
    // A worker failed: its error is the one to report.
  } catch (...) {
    queue.Fail(std::current_exception());
  }
  queue.Close();
  for (std::thread& t : workers) t.join();
  if (std::exception_ptr error = queue.error()) std::rethrow_exception(error);
  return walked;
}

}  // namespace envelopefs
