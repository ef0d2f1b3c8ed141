#include "sealer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "envelopefs/log.h"

namespace envelopefs {

Sealer::Sealer(int interval_seconds, size_t max_pending)
    : interval_seconds_(interval_seconds), max_pending_(max_pending), thread_([this] { Run(); }) {}

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
  std::map<CipherFile*, std::shared_ptr<CipherFile>> retry;
  if (work.size() > kPerFileFlushLimit) {
    // A burst (an untar, a copy of many small files): one fdatasync per file falls behind the
    // creator, and every waiting file holds a descriptor. One syncfs per backing file system
    // instead; it also flushes other workloads' dirty data there, which a burst amortizes.
    std::map<dev_t, int> by_device;
    for (auto& [file, count] : work) {
      struct stat st;
      if (::fstat(file->fd(), &st) == 0) by_device.emplace(st.st_dev, file->fd());
    }
    for (auto [dev, fd] : by_device) {
      if (::syncfs(fd) != 0) {
        Log(LogLevel::kWarning, "syncfs failed; closed files stay unsealed until the next try");
        std::lock_guard<std::mutex> lock(mutex_);
        pending_.merge(batch);
        return;
      }
    }
  } else {
    // Only our own files are flushed (a syncfs would flush every other workload's dirty data
    // on a shared backing file system too): writeback is started for the whole batch first,
    // then each file's data is waited for before its sealed record is written.
    for (auto& [file, count] : work) {
      ::sync_file_range(file->fd(), 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    for (auto& [file, count] : work) {
      if (::fdatasync(file->fd()) != 0) {
        Log(LogLevel::kWarning, file->display_name() + ": flush failed (" + std::strerror(errno) +
                                    "); it stays unsealed until the next try");
        retry.emplace(file.get(), file);
        file.reset();
      }
    }
  }
  // The sealed records need no flush: until one is durable, the unsealed record is.
  for (auto& [file, count] : work) {
    if (!file) continue;
    if (int rc = file->SealIfUnchanged(count); rc < 0) {
      Log(LogLevel::kWarning, file->display_name() + ": could not record its sealed size");
    }
  }
  if (!retry.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.merge(retry);
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
