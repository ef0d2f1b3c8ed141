// SecurePool — small key buffers carved out of large locked, guarded slabs.
//
// sodium_malloc costs an mmap, two mprotects, an mlock and a madvise per call (and the reverse
// to free), and each mprotect/munmap shoots down TLBs on every core. Opening a file needs a
// few 32/64-byte keys, so the daemon would spend a fifth of its time in those syscalls.
// SecurePool takes slabs of 64 KiB from sodium_malloc (locked memory with guard pages around
// the slab) and hands out fixed 64-byte slots; a slot is wiped (sodium_memzero) before it is
// reused. Slabs are never returned (at most a few MiB for the most files ever open at once).
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace envelopefs {

class SecurePool {
 public:
  static constexpr size_t kSlotSize = 64;

  static SecurePool& Instance();
  // A zeroed slot of kSlotSize bytes. Throws std::bad_alloc.
  uint8_t* Allocate();
  // Wipes `slot` and returns it to the pool.
  void Free(uint8_t* slot);

 private:
  SecurePool() = default;
  struct Impl;
  Impl& impl();
};

}  // namespace envelopefs
