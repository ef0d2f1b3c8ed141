#include "sealer.h"

#include <unistd.h>

#include <chrono>
#include <vector>

#include "envelopefs/log.h"

namespace envelopefs {

Sealer::Sealer(int backing_fd, int interval_seconds, size_t max_pending)
    : backing_fd_(backing_fd),
      interval_seconds_(interval_seconds),
      max_pending_(max_pending),
      thread_([this] { Run(); }) {}

Sealer::~Sealer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  Flush();
}

void Sealer::Enqueue(std::shared_ptr<CipherFile> file) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    CipherFile* key = file.get();
    pending_.emplace(key, std::move(file));
    if (pending_.size() >= max_pending_ && !flush_now_) wake = flush_now_ = true;
  }
  if (wake) wake_.notify_all();
}

void Sealer::Flush() {
  std::lock_guard<std::mutex> flush_lock(flush_mutex_);
  std::map<CipherFile*, std::shared_ptr<CipherFile>> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    batch.swap(pending_);
  }
  if (batch.empty()) return;
  std::vector<std::pair<std::shared_ptr<CipherFile>, uint64_t>> work;
  work.reserve(batch.size());
  for (auto& [key, file] : batch) work.emplace_back(file, file->ModificationCount());
  if (::syncfs(backing_fd_) != 0) {
    Log(LogLevel::kWarning, "syncfs failed; closed files stay unsealed until the next try");
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.merge(batch);
    return;
  }
  for (auto& [file, count] : work) {
    if (int rc = file->SealIfUnchanged(count); rc < 0) {
      Log(LogLevel::kWarning, file->display_name() + ": could not record its sealed size");
    }
  }
}

void Sealer::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::seconds(interval_seconds_),
                   [this] { return stop_ || flush_now_; });
    if (stop_) break;
    flush_now_ = false;
    lock.unlock();
    Flush();
    lock.lock();
  }
}

}  // namespace envelopefs
