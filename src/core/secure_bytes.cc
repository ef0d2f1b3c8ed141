#include "envelopefs/secure_bytes.h"

#include <sodium.h>

#include <cstring>
#include <new>
#include <utility>

#include "envelopefs/crypto.h"
#include "secure_pool.h"

namespace envelopefs {

namespace {

// Keys (32 and 64 bytes) come from the pool; anything larger gets its own sodium_malloc.
bool Pooled(size_t size) { return size != 0 && size <= SecurePool::kSlotSize; }

void Release(uint8_t* data, size_t size) {
  if (data == nullptr) return;
  if (Pooled(size)) {
    SecurePool::Instance().Free(data);  // wipes
  } else {
    sodium_free(data);  // wipes before freeing
  }
}

}  // namespace

SecureBytes::SecureBytes(size_t size) : size_(size) {
  if (size == 0) return;
  if (Pooled(size)) {
    data_ = SecurePool::Instance().Allocate();  // zeroed
    return;
  }
  EnsureCryptoInitialized();
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) throw std::bad_alloc();
  sodium_memzero(data_, size);
}

SecureBytes::~SecureBytes() { Release(data_, size_); }

SecureBytes::SecureBytes(SecureBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecureBytes& SecureBytes::operator=(SecureBytes&& other) noexcept {
  if (this != &other) {
    Release(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecureBytes SecureBytes::Copy(std::span<const uint8_t> bytes) {
  SecureBytes out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

SecureBytes SecureBytes::Random(size_t size) {
  SecureBytes out(size);
  RandomBytes(out.mutable_span());
  return out;
}

}  // namespace envelopefs
