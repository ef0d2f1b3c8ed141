#include "sealer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "envelopefs/log.h"

namespace envelopefs {

Sealer::Sealer(int interval_seconds, size_t max_pending)
    : interval_seconds_(interval_seconds),
      max_pending_(max_pending),
      pool_(kFlushThreads),
      thread_([this] { Run(); }) {}

Sealer::~Sealer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  drained_.notify_all();
  thread_.join();
  Flush();
}

void Sealer::Enqueue(std::shared_ptr<CipherFile> file) {
  bool wake = false;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // Backpressure: a creator faster than the disk waits here (its release does) rather than
    // exhausting the daemon's descriptors with files waiting to be sealed.
    drained_.wait(lock, [this] { return stop_ || pending_.size() + in_flight_ < max_pending_; });
    CipherFile* key = file.get();
    pending_.emplace(key, std::move(file));
    if (2 * pending_.size() >= max_pending_ && !flush_now_) wake = flush_now_ = true;
  }
  if (wake) wake_.notify_all();
}

void Sealer::Flush() {
  std::lock_guard<std::mutex> flush_lock(flush_mutex_);
  std::vector<Work> work;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    work.reserve(pending_.size() + retry_.size());
    for (auto& [key, file] : pending_) work.push_back({std::move(file), 0, /*counted=*/true});
    for (auto& [key, file] : retry_) {
      if (!pending_.count(key)) work.push_back({std::move(file), 0, /*counted=*/false});
    }
    in_flight_ += pending_.size();
    pending_.clear();
    retry_.clear();
  }
  if (work.empty()) return;
  for (auto& w : work) w.count = w.file->ModificationCount();
  // Only our own files are flushed, never the whole backing file system (a syncfs would flush
  // every other workload's dirty data there too). Writeback is started for the whole batch at
  // once, so that the fdatasyncs below mostly wait for I/O already under way.
  for (auto& w : work) ::sync_file_range(w.file->fd(), 0, 0, SYNC_FILE_RANGE_WRITE);
  for (size_t begin = 0; begin < work.size(); begin += kChunk) {
    FlushChunk(std::span<Work>(work).subspan(begin, std::min(kChunk, work.size() - begin)));
  }
}

void Sealer::FlushChunk(std::span<Work> chunk) {
  // A file's sealed record is written only once its data is durable; the record itself needs no
  // flush: until it is durable, the unsealed record is.
  pool_.Run(chunk.size(), [&](size_t i) {
    Work& w = chunk[i];
    if (::fdatasync(w.file->fd()) != 0) {
      w.flush_error = errno;
      return;
    }
    w.seal_failed = w.file->SealIfUnchanged(w.count) < 0;
  });
  size_t released = 0;
  std::map<CipherFile*, std::shared_ptr<CipherFile>> retry;
  for (Work& w : chunk) {
    if (w.counted) ++released;
    if (w.flush_error != 0) {
      Log(LogLevel::kWarning, w.file->display_name() + ": flush failed (" +
                                  std::strerror(w.flush_error) +
                                  "); it stays unsealed until the next try");
      CipherFile* key = w.file.get();
      retry.emplace(key, std::move(w.file));
    } else if (w.seal_failed) {
      Log(LogLevel::kWarning, w.file->display_name() + ": could not record its sealed size");
    }
    w.file.reset();  // its descriptor closes now (unless the file is open again)
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_ -= released;
    retry_.merge(retry);  // not counted against max_pending: failures never block a close
  }
  drained_.notify_all();
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
