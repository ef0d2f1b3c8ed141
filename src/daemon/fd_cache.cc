// FdCache — see fd_cache.h.
#include "fd_cache.h"

#include <utility>
#include <vector>

namespace envelopefs {

std::shared_ptr<const UniqueFd> FdCache::Find(Slot& slot) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!slot.fd) return nullptr;
  lru_.splice(lru_.begin(), lru_, slot.pos);
  return slot.fd;
}

std::shared_ptr<const UniqueFd> FdCache::Insert(Slot& slot, std::shared_ptr<const UniqueFd> fd) {
  if (capacity_ == 0) return fd;
  std::vector<std::shared_ptr<const UniqueFd>> evicted;  // closed after the lock is released
  std::shared_ptr<const UniqueFd> cached;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (slot.fd) {
      lru_.splice(lru_.begin(), lru_, slot.pos);
      evicted.push_back(std::move(fd));  // another request cached one first
      return slot.fd;
    }
    slot.fd = std::move(fd);
    lru_.push_front(&slot);
    slot.pos = lru_.begin();
    while (lru_.size() > capacity_) {
      Slot* last = lru_.back();
      lru_.pop_back();
      evicted.push_back(std::move(last->fd));
      last->fd = nullptr;
    }
    cached = slot.fd;
  }
  return cached;
}

void FdCache::Remove(Slot& slot) {
  std::shared_ptr<const UniqueFd> fd;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!slot.fd) return;
  lru_.erase(slot.pos);
  fd = std::move(slot.fd);
  slot.fd = nullptr;
}

size_t FdCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lru_.size();
}

}  // namespace envelopefs
