// LiveFiles — see live_files.h.
#include "live_files.h"

#include <sys/stat.h>

#include <algorithm>

namespace envelopefs {

std::shared_ptr<CipherFile> LiveFiles::Find(const InodeFd& held, dev_t dev, ino_t ino) {
  if (held.get() < 0) return nullptr;
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
  // The caller's object and ours both exist now (each is held open): if their numbers are
  // equal they are the same inode (inode numbers are unique among the inodes that exist).
  struct stat held_st, st;
  if (::fstat(held.get(), &held_st) != 0 || ::fstat(file->fd(), &st) != 0 ||
      held_st.st_dev != dev || held_st.st_ino != ino || st.st_dev != dev || st.st_ino != ino) {
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
