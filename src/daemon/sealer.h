// Sealer — records the exact size of files some time after they are closed.
//
// Sealing right at close would need an fsync per file (or risk a sealed record that a crash
// makes disagree with the data). Instead, closed files wait here; every interval the sealer
// snapshots their modification counts, flushes their data, and then writes each unchanged
// file's sealed record. Only the daemon's own files are flushed, never the whole backing file
// system: writeback is started for the whole batch (sync_file_range), then the files are
// fdatasync'ed by kFlushThreads threads at once, kChunk files at a time, each file's sealed
// record written as soon as its fdatasync returned 0 (concurrent fdatasyncs share ext4's journal
// commits, so a burst such as an untar keeps up). A file whose flush failed waits for the next
// round. Flush() does the same immediately (used at unmount). Each waiting file holds open
// descriptors: at most `max_pending` files wait or are being flushed (Enqueue() waits for the
// sealer beyond that, so a creator faster than the disk cannot exhaust the daemon's descriptors),
// a flush starts early once half as many wait, and each chunk's descriptors close once it is done.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "envelopefs/cipher_file.h"
#include "flush_pool.h"

namespace envelopefs {

class Sealer {
 public:
  static constexpr size_t kFlushThreads = 16;
  static constexpr size_t kChunk = 256;

  Sealer(int interval_seconds, size_t max_pending);  // max_pending >= 1
  ~Sealer();                                         // stops the thread after a final Flush()

  void Enqueue(std::shared_ptr<CipherFile> file);
  void Flush();

 private:
  struct Work {
    std::shared_ptr<CipherFile> file;
    uint64_t count;  // ModificationCount() before the flush
    bool counted;    // counted in in_flight_ (not a retry)
    int flush_error = 0;
    bool seal_failed = false;
  };

  void Run();
  void FlushChunk(std::span<Work> chunk);  // fdatasync and seal on the pool, then release

  const int interval_seconds_;
  const size_t max_pending_;
  std::mutex mutex_;
  std::mutex flush_mutex_;  // one flush at a time
  std::condition_variable wake_;
  std::condition_variable drained_;  // pending_ or in_flight_ shrank
  bool stop_ = false;
  bool flush_now_ = false;
  std::map<CipherFile*, std::shared_ptr<CipherFile>> pending_;
  std::map<CipherFile*, std::shared_ptr<CipherFile>> retry_;  // their flush failed
  size_t in_flight_ = 0;  // files taken from pending_ by a Flush and not released yet
  FlushPool pool_;        // before thread_: the destructor's last Flush() still uses it
  std::thread thread_;
};

}  // namespace envelopefs
