// LiveFiles — see live_files.h.
#include "live_files.h"

#include <sys/stat.h>

#include <algorithm>

namespace envelopefs {

std::shared_ptr<CipherFile> LiveFiles::Find(dev_t dev, ino_t ino) {
  std::shared_ptr<CipherFile> file;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = files_.find({dev, ino});
    if (it == files_.end()) return nullptr;
    file = it->second.lock();
    if (!file) {
      files_.erase(it);
      return nullptr;
    }
  }
  // The caller found (dev, ino) by a name just now; if our file still has a name too, both
  // are the same inode (inode numbers are unique among the inodes that exist).
  struct stat st;
  if (::fstat(file->fd(), &st) != 0 || st.st_nlink == 0 || st.st_dev != dev || st.st_ino != ino) {
    return nullptr;
  }
  return file;
}

void LiveFiles::Remember(dev_t dev, ino_t ino, const std::shared_ptr<CipherFile>& file) {
  std::lock_guard<std::mutex> lock(mutex_);
  files_[{dev, ino}] = file;
  if (files_.size() < prune_at_) return;
  std::erase_if(files_, [](const auto& entry) { return entry.second.expired(); });
  prune_at_ = std::max<size_t>(1024, 2 * files_.size());
}

}  // namespace envelopefs
