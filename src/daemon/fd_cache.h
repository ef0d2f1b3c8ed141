// FdCache — a small bounded cache (least recently used) of the O_PATH descriptors of inodes that
// pin none themselves (file handles, backing_handle.h), so that the common paths (a directory
// being filled, a file being stat'ed right after its lookup) do not pay an open_by_handle_at
// per request. Holds at most capacity() descriptors; a descriptor evicted while a request holds
// a lease on it (InodeFd) is closed when the last lease goes.
// Each Inode embeds a Slot; the cache links the slots it holds. An inode's slot must be Removed
// before the inode is freed (InodeTable::Forget does).
// Thread-safe: one mutex, never held across a system call; it guards every Slot's fields.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>

#include "envelopefs/unique_fd.h"

namespace envelopefs {

class FdCache {
 public:
  struct Slot {
    std::shared_ptr<const UniqueFd> fd;  // null when not cached
    std::list<Slot*>::iterator pos;      // in lru_, when cached
  };

  explicit FdCache(size_t capacity = 0) : capacity_(capacity) {}
  void set_capacity(size_t capacity) { capacity_ = capacity; }  // before concurrent use
  size_t capacity() const { return capacity_; }

  // The cached descriptor of `slot` (made the most recent), or null.
  std::shared_ptr<const UniqueFd> Find(Slot& slot);
  // Caches `fd` for `slot` unless it holds one already; returns the one cached (or `fd` itself
  // when the capacity is 0). Evicts the least recently used beyond the capacity.
  std::shared_ptr<const UniqueFd> Insert(Slot& slot, std::shared_ptr<const UniqueFd> fd);
  void Remove(Slot& slot);
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::list<Slot*> lru_;  // most recent first
  size_t capacity_;
};

}  // namespace envelopefs
