#include "inode_table.h"

#include <sys/stat.h>

#include <cerrno>

#include "emfile_retry.h"

namespace envelopefs {

void InodeTable::EnableHandles(int root_fd, dev_t root_dev, int mount_id, size_t cache) {
  mount_fd_ = root_fd;
  mount_dev_ = root_dev;
  mount_id_ = mount_id;
  cache_.set_capacity(cache);
}

bool InodeTable::SameObject(const Inode& inode, mode_t type, const BackingHandle* handle) {
  if (inode.type != type) return false;
  // A pinned descriptor keeps its object alive, and no other object has its inode number.
  if (inode.pinned) return true;
  // Else only the handle tells: without one for the new object (a bind mount of the same file
  // system below the cipher dir, say) it is treated as another (a new inode pins it).
  return handle != nullptr && inode.handle == *handle;
}

Inode* InodeTable::FindOrInsert(UniqueFd fd, dev_t dev, ino_t ino, mode_t type, InodeFd* lease) {
  auto shared = std::make_shared<const UniqueFd>(std::move(fd));
  if (lease != nullptr) *lease = InodeFd(shared);
  // The object's handle, made outside the table's lock (a system call): a new inode keeps it,
  // and a cached one must have the same.
  BackingHandle handle;
  const bool by_handle =
      uses_handles() && dev == mount_dev_ && handle.Make(shared->get(), mount_id_);
  Inode* inode = nullptr;
  bool over = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = inodes_[{dev, ino}];
    if (slot && !SameObject(*slot, type, by_handle ? &handle : nullptr)) {
      // Stale: its object is gone and the number reused. The kernel still holds lookups of it
      // (and forgets them by its address): it waits for that in detached_.
      const Inode* stale = slot.get();
      detached_.emplace(stale, std::move(slot));
    }
    if (!slot) {
      slot = std::make_unique<Inode>();
      if (by_handle) {
        slot->handle = handle;
      } else {
        slot->pinned = shared;
        ++pinned_;
      }
      slot->dev = dev;
      slot->ino = ino;
      slot->type = type;
      over = inodes_.size() + detached_.size() > watch_limit_ || pinned_ > watch_pinned_;
    }
    slot->nlookup.fetch_add(1);
    inode = slot.get();
  }
  if (over && over_limit_) over_limit_();
  // A looked-up object is about to be used (getattr, open, a new entry in it): keep its
  // descriptor. The inode cannot be freed meanwhile: the kernel has not seen this lookup yet.
  if (!inode->pinned) cache_.Insert(inode->fd_slot, std::move(shared));
  return inode;
}

int InodeTable::Use(Inode& inode, InodeFd* lease) {
  if (inode.pinned) {
    *lease = InodeFd(inode.pinned);
    return 0;
  }
  if (auto fd = cache_.Find(inode.fd_slot)) {
    *lease = InodeFd(std::move(fd));
    return 0;
  }
  // The handle was made from a descriptor reached beneath the cipher dir (backing_handle.h);
  // a deleted object's handle is stale: it no longer exists.
  UniqueFd fd(OpenRetryingOnEmfile([&] { return inode.handle.Open(mount_fd_); }));
  if (!fd.valid()) return errno == ESTALE ? ENOENT : errno;
  *lease = InodeFd(cache_.Insert(inode.fd_slot, std::make_shared<const UniqueFd>(std::move(fd))));
  return 0;
}

void InodeTable::Forget(Inode* inode, uint64_t n) {
  if (inode->is_root) return;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t left = inode->nlookup.fetch_sub(n) - n;
  if (left != 0) return;
  cache_.Remove(inode->fd_slot);
  if (inode->pinned) --pinned_;
  std::unique_ptr<Inode> gone;
  auto it = inodes_.find({inode->dev, inode->ino});
  if (it != inodes_.end() && it->second.get() == inode) {
    gone = std::move(it->second);
    inodes_.erase(it);
  } else if (auto stale = detached_.find(inode); stale != detached_.end()) {
    gone = std::move(stale->second);  // a stale inode: its (dev, ino) belongs to another one now
    detached_.erase(stale);
  }
  if (gone && holding_forgotten_) {
    // Only its address must stay reserved: its descriptor (if it pins one) closes now, as it
    // was counted out of pinned_ above. The kernel sends no request for a forgotten inode.
    gone->pinned.reset();
    forgotten_.push_back(std::move(gone));
  }
}

void InodeTable::HoldForgotten() {
  std::lock_guard<std::mutex> lock(mutex_);
  holding_forgotten_ = true;
}

void InodeTable::ReleaseForgotten() {
  std::vector<std::unique_ptr<Inode>> gone;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_forgotten_ = false;
    gone.swap(forgotten_);
  }
  // Freed outside the lock: each may close a descriptor.
}

std::vector<std::pair<fuse_ino_t, std::string>> InodeTable::IdleEntries(size_t max) {
  std::vector<std::pair<fuse_ino_t, std::string>> out;
  std::lock_guard<std::mutex> lock(mutex_);
  // Resume where the last call stopped, so entries the kernel keeps (a process's working
  // directory, say) are not offered again and again while the rest are never reached.
  auto it = inodes_.lower_bound(idle_cursor_);
  for (size_t seen = 0; seen < inodes_.size() && out.size() < max; ++seen, ++it) {
    if (it == inodes_.end()) it = inodes_.begin();
    const Inode& inode = *it->second;
    if (inode.type != S_IFREG && inode.type != S_IFLNK && inode.type != S_IFDIR) continue;
    if (inode.is_root) continue;
    std::lock_guard<std::mutex> ilock(it->second->mutex);
    if (inode.name.empty() || !inode.open_file.expired()) continue;
    fuse_ino_t parent = FUSE_ROOT_ID;
    if (!inode.parent_is_root) {
      // A parent the kernel has forgotten (no longer in the table) is not named: its node id
      // may be another inode's by now.
      auto found = inodes_.find(inode.parent_key);
      if (found == inodes_.end()) continue;
      parent = reinterpret_cast<fuse_ino_t>(found->second.get());
    }
    out.emplace_back(parent, inode.name);
  }
  idle_cursor_ = it == inodes_.end() ? std::pair<dev_t, ino_t>{} : it->first;
  return out;
}

std::vector<std::shared_ptr<CipherFile>> InodeTable::OpenFiles() const {
  std::vector<std::shared_ptr<CipherFile>> out;
  std::lock_guard<std::mutex> lock(mutex_);
  auto collect = [&out](Inode& inode) {
    if (inode.type != S_IFREG) return;
    std::lock_guard<std::mutex> ilock(inode.mutex);
    if (auto file = inode.open_file.lock()) out.push_back(std::move(file));
  };
  for (const auto& [key, inode] : inodes_) collect(*inode);
  for (const auto& [key, inode] : detached_) collect(*inode);
  return out;
}

size_t InodeTable::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return inodes_.size() + detached_.size();
}

size_t InodeTable::pinned() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pinned_;
}

}  // namespace envelopefs
