#include "inode_table.h"

#include <sys/stat.h>

namespace envelopefs {

Inode* InodeTable::FindOrInsert(UniqueFd fd, dev_t dev, ino_t ino, mode_t type) {
  Inode* inode;
  bool over = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = inodes_[{dev, ino}];
    if (!slot) {
      slot = std::make_unique<Inode>();
      slot->fd = std::move(fd);
      slot->dev = dev;
      slot->ino = ino;
      slot->type = type;
      over = inodes_.size() > watch_limit_;
    }
    slot->nlookup.fetch_add(1);
    inode = slot.get();
  }
  if (over && over_limit_) over_limit_();
  return inode;
}

void InodeTable::Forget(Inode* inode, uint64_t n) {
  if (inode->is_root) return;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t left = inode->nlookup.fetch_sub(n) - n;
  if (left == 0) inodes_.erase({inode->dev, inode->ino});
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
    if (inode.parent == 0 || inode.name.empty() || !inode.open_file.expired()) continue;
    out.emplace_back(inode.parent, inode.name);
  }
  idle_cursor_ = it == inodes_.end() ? std::pair<dev_t, ino_t>{} : it->first;
  return out;
}

std::vector<std::shared_ptr<CipherFile>> InodeTable::OpenFiles() const {
  std::vector<std::shared_ptr<CipherFile>> out;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [key, inode] : inodes_) {
    if (inode->type != S_IFREG) continue;
    std::lock_guard<std::mutex> ilock(inode->mutex);
    if (auto file = inode->open_file.lock()) out.push_back(std::move(file));
  }
  return out;
}

size_t InodeTable::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return inodes_.size();
}

}  // namespace envelopefs
