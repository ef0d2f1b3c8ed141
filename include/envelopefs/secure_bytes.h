// SecureBytes — a fixed-size buffer for key material in locked, guarded memory.
//
// Backed by libsodium's sodium_malloc (mlock'ed, guard pages, canary) and wiped when destroyed.
// Buffers of up to 64 bytes (keys) are slots of a locked, guarded slab (SecurePool) rather than
// a sodium_malloc of their own, which costs five syscalls each way. Move-only; never copied
// implicitly. Use Clone() when a copy is really meant. Not thread-safe for concurrent mutation;
// concurrent reads of an unchanging buffer are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace envelopefs {

class SecureBytes {
 public:
  SecureBytes() = default;
  explicit SecureBytes(size_t size);  // zero-filled; throws std::bad_alloc
  ~SecureBytes();
  SecureBytes(SecureBytes&& other) noexcept;
  SecureBytes& operator=(SecureBytes&& other) noexcept;
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;

  static SecureBytes Copy(std::span<const uint8_t> bytes);
  static SecureBytes Random(size_t size);  // from the OS CSPRNG
  SecureBytes Clone() const { return Copy(span()); }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> span() const { return {data_, size_}; }
  std::span<uint8_t> mutable_span() { return {data_, size_}; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

constexpr size_t kKeySize = 32;  // every symmetric key in envelopefs is 256 bits

}  // namespace envelopefs
