// SecurePool — see secure_pool.h.
#include "secure_pool.h"

#include <sodium.h>

#include <mutex>
#include <new>
#include <vector>

#include "envelopefs/crypto.h"

namespace envelopefs {

namespace {
constexpr size_t kSlabSize = 64 * 1024;
}  // namespace

struct SecurePool::Impl {
  std::mutex mutex;
  std::vector<uint8_t*> free_slots;
};

SecurePool& SecurePool::Instance() {
  static SecurePool* pool = new SecurePool();  // never destroyed: slots may outlive statics
  return *pool;
}

SecurePool::Impl& SecurePool::impl() {
  static Impl* impl = new Impl();
  return *impl;
}

uint8_t* SecurePool::Allocate() {
  Impl& p = impl();
  std::lock_guard<std::mutex> lock(p.mutex);
  if (p.free_slots.empty()) {
    EnsureCryptoInitialized();
    auto* slab = static_cast<uint8_t*>(sodium_malloc(kSlabSize));
    if (slab == nullptr) throw std::bad_alloc();
    sodium_memzero(slab, kSlabSize);
    p.free_slots.reserve(p.free_slots.size() + kSlabSize / kSlotSize);
    for (size_t off = kSlabSize; off >= kSlotSize; off -= kSlotSize) {
      p.free_slots.push_back(slab + off - kSlotSize);
    }
  }
  uint8_t* slot = p.free_slots.back();
  p.free_slots.pop_back();
  return slot;
}

void SecurePool::Free(uint8_t* slot) {
  sodium_memzero(slot, kSlotSize);
  Impl& p = impl();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.free_slots.push_back(slot);
}

}  // namespace envelopefs
