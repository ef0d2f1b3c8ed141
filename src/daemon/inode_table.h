// InodeTable — the daemon's inodes: one per backing object, keyed by (st_dev, st_ino).
//
// Each Inode holds an O_PATH fd of its backing object (as libfuse's passthrough_hp does), so
// renames in the cipher dir never invalidate it, plus the cached directory IVs of a directory,
// and the shared CipherFile and the file id of a regular file. The FUSE inode number is the
// Inode's address. The table is guarded by its own mutex; each Inode's mutable parts by
// Inode::mutex.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "envelopefs/beneath.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

struct Inode {
  UniqueFd fd;  // O_PATH
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  bool is_root = false;
  std::atomic<uint64_t> nlookup{0};

  std::mutex open_mutex;                // one open of the cipher file at a time (see envelope_fs.h)
  std::mutex mutex;                     // the parts below; never held across disk I/O
  fuse_ino_t parent = 0;                // where the kernel last looked it up (for invalidation)
  std::string name;                     //   and under which plaintext name
  std::optional<DirIvs> dir_ivs;        // directories: read on first use
  std::weak_ptr<CipherFile> open_file;  // regular files: shared by all opens
  // Regular files: the chunk layout from the header (read once; only needed to report the size
  // of a closed file large enough for format versions to differ), cleared when we rewrite it.
  std::optional<ChunkLayout> layout;
  // Regular files: the file id from the authenticated header (what format-2 xattr values are
  // bound to), read on the first xattr operation. A file keeps its id for life (also through
  // truncation to zero and rewrap), so it is never cleared.
  std::optional<FileId> file_id;
  // Regular files: the change time shown for a backing change time (file_times.h), remembered
  // so that the backing file's xattr is read once per change.
  struct CtimeMemo {
    struct timespec backing, shown;
  };
  std::optional<CtimeMemo> ctime_memo;
};

class InodeTable {
 public:
  // Takes ownership of `fd`. Returns the existing inode for (dev, ino) (closing `fd`) or a new
  // one, with its lookup count incremented by one.
  Inode* FindOrInsert(UniqueFd fd, dev_t dev, ino_t ino, mode_t type);
  // Drops `n` lookups; frees the inode when none remain.
  void Forget(Inode* inode, uint64_t n);
  size_t size() const;

  // Up to `max` (parent, name) pairs of cached entries (files, symlinks and directories other
  // than the root) that no one has open through us: the entries the daemon asks the kernel to
  // forget when it holds too many descriptors. (The kernel keeps what is in use, such as a
  // process's working directory; dropping a directory drops its unused subtree.)
  std::vector<std::pair<fuse_ino_t, std::string>> IdleEntries(size_t max);

  // Every file open through us now (for quiescing: each is sealed).
  std::vector<std::shared_ptr<CipherFile>> OpenFiles() const;

  // Calls `over` (from the inserting thread, without the table's lock) whenever an insertion
  // leaves more than `limit` inodes. Set once, before the table is used concurrently.
  void WatchSize(size_t limit, std::function<void()> over) {
    watch_limit_ = limit;
    over_limit_ = std::move(over);
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
  std::pair<dev_t, ino_t> idle_cursor_{};  // where IdleEntries resumes
  size_t watch_limit_ = SIZE_MAX;
  std::function<void()> over_limit_;
};

}  // namespace envelopefs
