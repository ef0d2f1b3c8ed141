#include "envelopefs/secure_bytes.h"

#include <sodium.h>

#include <cstring>
#include <new>
#include <utility>

#include "envelopefs/crypto.h"

namespace envelopefs {

SecureBytes::SecureBytes(size_t size) : size_(size) {
  if (size == 0) return;
  EnsureCryptoInitialized();
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) throw std::bad_alloc();
  sodium_memzero(data_, size);
}

SecureBytes::~SecureBytes() {
  if (data_ != nullptr) sodium_free(data_);  // wipes before freeing
}

SecureBytes::SecureBytes(SecureBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecureBytes& SecureBytes::operator=(SecureBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) sodium_free(data_);
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
