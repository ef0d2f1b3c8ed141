// InodeFd — a lease on the descriptor of an inode's backing object, held by a request while it
// uses the descriptor (InodeTable::Use). The descriptor stays open as long as a lease on it
// exists, even if the inode's cache entry is evicted or the inode forgotten meanwhile, so it can
// never be closed (and its number reused) under a request. Cheap to copy (one shared_ptr).
// Thread safety: a lease is used by one thread; distinct leases on one descriptor may be used and
// dropped from any threads.
#pragma once

#include <memory>
#include <utility>

#include "envelopefs/unique_fd.h"

namespace envelopefs {

class InodeFd {
 public:
  InodeFd() = default;
  explicit InodeFd(std::shared_ptr<const UniqueFd> fd) : fd_(std::move(fd)) {}

  // The descriptor (O_PATH, or another open descriptor of the same object); -1 for no lease.
  int get() const { return fd_ ? fd_->get() : -1; }

 private:
  std::shared_ptr<const UniqueFd> fd_;
};

}  // namespace envelopefs
