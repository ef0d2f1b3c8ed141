// InodeTable — the daemon's inodes: one per backing object, keyed by (st_dev, st_ino).
//
// Each Inode finds its backing object without a path, so renames in the cipher dir never
// invalidate it: by its file handle (backing_handle.h), opened on demand through a small cache
// of descriptors (fd_cache.h), when the cipher dir's file system supports handles and the daemon
// may open them (EnableHandles, probed at mount); otherwise, and for the root, by an O_PATH
// descriptor it pins for life (as libfuse's passthrough_hp does). Requests get the descriptor
// as a lease (Use, inode_fd.h). An Inode also caches the directory IVs of a directory, and the
// shared CipherFile and the file id of a regular file. The FUSE inode number is the Inode's
// address. The table is guarded by its own mutex; each Inode's mutable parts by Inode::mutex;
// the cache by its own (taken inside the table's, never the other way round).
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

#include "backing_handle.h"
#include "envelopefs/beneath.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "fd_cache.h"
#include "inode_fd.h"

namespace envelopefs {

struct Inode {
  // How the backing object is reached (InodeTable::Use); set before the inode is shared and
  // never changed: a descriptor pinned for the inode's life (the root, and every inode without
  // a handle), or else its file handle, with its place in the table's descriptor cache.
  std::shared_ptr<const UniqueFd> pinned;
  BackingHandle handle;
  FdCache::Slot fd_slot;
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  bool is_root = false;
  std::atomic<uint64_t> nlookup{0};

  std::mutex open_mutex;  // one open of the cipher file at a time (see envelope_fs.h)
  std::mutex mutex;       // the parts below; never held across disk I/O
  std::mutex mode_mutex;  // a chmod, and the set-ID drop of a direct write (both read the mode)
  // Where the kernel last looked it up (for invalidation): the root, or the directory with this
  // key in the table (by key, not by node id: a parent forgotten since is looked up again under
  // a new one, and its old address may belong to another inode by then).
  bool parent_is_root = false;
  std::pair<dev_t, ino_t> parent_key;
  std::string name;                     //   and under which plaintext name (empty: none yet)
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
  // From now on, new inodes on the cipher dir's mount keep a file handle instead of a
  // descriptor (see backing_handle.h). `root_fd`: the cipher dir (pinned by the root inode,
  // which outlives the table); `mount_id` from ProbeFileHandles; `cache` descriptors at most
  // are kept open for hot inodes. Before the table is used concurrently.
  void EnableHandles(int root_fd, dev_t root_dev, int mount_id, size_t cache);
  bool uses_handles() const { return mount_fd_ >= 0; }
  size_t fd_cache_capacity() const { return cache_.capacity(); }

  // Takes ownership of `fd` (an O_PATH descriptor of the object (dev, ino)). Returns the
  // existing inode for (dev, ino) or a new one, with its lookup count incremented by one.
  // `lease` (if given) receives a lease on `fd` for the caller's use.
  // An inode kept by file handle holds nothing that keeps its object alive: when that object is
  // deleted behind our back (a sync tool writing the cipher dir), the file system may give its
  // inode number to a new object. So a cached inode is only returned if its handle names the
  // object `fd` refers to (a handle carries the generation); otherwise it is stale: it leaves
  // (dev, ino) to a new inode, and lives on, detached, until the kernel forgets it (its handle
  // opens as ENOENT meanwhile).
  Inode* FindOrInsert(UniqueFd fd, dev_t dev, ino_t ino, mode_t type, InodeFd* lease = nullptr);
  // Drops `n` lookups; frees the inode when none remain.
  void Forget(Inode* inode, uint64_t n);
  size_t size() const;  // including detached inodes
  // How many inodes pin a descriptor (all of them without file handles).
  size_t pinned() const;

  // A lease on a descriptor of `inode`'s backing object (O_PATH, but possibly another open
  // descriptor of it). 0, or an errno: ENOENT when the object no longer exists (its handle is
  // stale), EMFILE, ... Never closes a descriptor another request holds.
  int Use(Inode& inode, InodeFd* lease);

  // Up to `max` (parent, name) pairs of cached entries (files, symlinks and directories other
  // than the root) that no one has open through us: the entries the daemon asks the kernel to
  // forget when it holds too many descriptors. (The kernel keeps what is in use, such as a
  // process's working directory; dropping a directory drops its unused subtree.)
  std::vector<std::pair<fuse_ino_t, std::string>> IdleEntries(size_t max);

  // While notifications name parents by node id (their Inode's address), no forgotten Inode may
  // be freed: its address could go to a new inode (a file, say), and a notification meant for
  // the forgotten parent would reach it. Between HoldForgotten and ReleaseForgotten (one holder
  // at a time: the relief thread), forgotten inodes wait; the kernel answers a notification
  // through one with ENOENT. ReleaseForgotten frees them.
  void HoldForgotten();
  void ReleaseForgotten();

  // Every file open through us now (for quiescing: each is sealed).
  std::vector<std::shared_ptr<CipherFile>> OpenFiles() const;

  // Calls `over` (from the inserting thread, without the table's lock) whenever an insertion
  // leaves more than `limit` inodes, or more than `pinned_limit` inodes pinning a descriptor.
  // Set once, before the table is used concurrently.
  void WatchSize(size_t limit, std::function<void()> over, size_t pinned_limit = SIZE_MAX) {
    watch_limit_ = limit;
    watch_pinned_ = pinned_limit;
    over_limit_ = std::move(over);
  }

 private:
  // Whether the cached `inode` is the object of type `type` whose handle is `handle` (null: it
  // has none).
  static bool SameObject(const Inode& inode, mode_t type, const BackingHandle* handle);

  mutable std::mutex mutex_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
  // Stale inodes the kernel still knows (FindOrInsert), by address, until it forgets them.
  std::map<const Inode*, std::unique_ptr<Inode>> detached_;
  std::pair<dev_t, ino_t> idle_cursor_{};          // where IdleEntries resumes
  bool holding_forgotten_ = false;                 // HoldForgotten
  std::vector<std::unique_ptr<Inode>> forgotten_;  // forgotten while held
  size_t pinned_ = 0;                              // inodes with a pinned descriptor
  size_t watch_limit_ = SIZE_MAX;
  size_t watch_pinned_ = SIZE_MAX;
  // With file handles: the cipher dir's descriptor, device and mount id; else -1.
  int mount_fd_ = -1;
  dev_t mount_dev_ = 0;
  int mount_id_ = -1;
  FdCache cache_;
  std::function<void()> over_limit_;
};

}  // namespace envelopefs
