// Sealer — records the exact size of files some time after they are closed.
//
// Sealing right at close would need an fsync per file (or risk a sealed record that a crash
// makes disagree with the data). Instead, closed files wait here; every interval the sealer
// snapshots their modification counts, flushes their data, and then writes each unchanged
// file's sealed record. Up to kPerFileFlushLimit files are flushed one by one (sync_file_range
// for all, then fdatasync each: only our own files); a larger burst with one syncfs(2) of the
// backing file system, which per-file flushes could not keep up with. Flush() does the same
// immediately (used at unmount). Each waiting file holds open descriptors, so a flush also starts
// early once `max_pending` files wait (a burst of small files must not exhaust the daemon's
// descriptors). Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "envelopefs/cipher_file.h"

namespace envelopefs {

class Sealer {
 public:
  static constexpr size_t kPerFileFlushLimit = 64;

  Sealer(int interval_seconds, size_t max_pending);
  ~Sealer();  // stops the thread after a final Flush()

  void Enqueue(std::shared_ptr<CipherFile> file);
  void Flush();

 private:
  void Run();

  const int interval_seconds_;
  const size_t max_pending_;
  std::mutex mutex_;
  std::mutex flush_mutex_;  // one flush at a time
  std::condition_variable wake_;
  bool stop_ = false;
  bool flush_now_ = false;
  std::map<CipherFile*, std::shared_ptr<CipherFile>> pending_;
  std::thread thread_;
};

}  // namespace envelopefs
