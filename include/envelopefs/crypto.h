// Cryptographic primitives used by envelopefs, as thin wrappers over OpenSSL 3 and libsodium.
//
// Nothing here is hand-rolled: AES-256-GCM, HKDF-SHA256, HMAC-SHA256 and SHA-256 come from
// OpenSSL 3 (EVP), randomness from libsodium's randombytes (the OS CSPRNG, getrandom(2)).
// Functions are thread-safe. AeadContext is thread-confined: use one per thread (see
// ThreadAead()), which is how the data path avoids creating a cipher context per chunk.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "envelopefs/secure_bytes.h"

namespace envelopefs {

constexpr size_t kGcmNonceSize = 12;  // 96-bit nonces, fresh and random for every seal
constexpr size_t kGcmTagSize = 16;    // full 128-bit tags, never truncated
constexpr size_t kSha256Size = 32;

using Sha256Digest = std::array<uint8_t, kSha256Size>;
using GcmNonce = std::array<uint8_t, kGcmNonceSize>;
using GcmTag = std::array<uint8_t, kGcmTagSize>;

// Throws Error(kIo) "OpenSSL <what> failed: <OpenSSL's error>"; use right after a failed call.
[[noreturn]] void ThrowOpenSslError(const char* what);

// Initializes libsodium once; idempotent and thread-safe. Throws on failure.
void EnsureCryptoInitialized();

// Fills `out` from the OS CSPRNG.
void RandomBytes(std::span<uint8_t> out);
GcmNonce RandomNonce();

// HKDF-SHA256 (RFC 5869) with an empty salt: derives `out.size()` bytes from `key` for `label`.
void HkdfSha256(std::span<const uint8_t> key, std::string_view label, std::span<uint8_t> out);
SecureBytes DeriveKey(std::span<const uint8_t> key, std::string_view label);  // 32 bytes

Sha256Digest HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
Sha256Digest Sha256(std::span<const uint8_t> data);

// Constant-time comparison (CRYPTO_memcmp); false if sizes differ.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

// AES-256-GCM with a reusable EVP context. The cipher is fetched once and the context reused,
// so no context is created per chunk. Plaintext and ciphertext have the same length.
class AeadContext {
 public:
  AeadContext();
  ~AeadContext();
  AeadContext(const AeadContext&) = delete;
  AeadContext& operator=(const AeadContext&) = delete;

  // Seals `plaintext` into `ciphertext` (same size) with `nonce` and `aad`; writes the tag.
  void Seal(std::span<const uint8_t> key, std::span<const uint8_t, kGcmNonceSize> nonce,
            std::span<const uint8_t> aad, std::span<const uint8_t> plaintext,
            std::span<uint8_t> ciphertext, std::span<uint8_t, kGcmTagSize> tag);

  // Opens; returns false (and leaves `plaintext` unspecified: callers must discard it) when
  // authentication fails. Throws only on internal OpenSSL errors.
  [[nodiscard]] bool Open(std::span<const uint8_t> key,
                          std::span<const uint8_t, kGcmNonceSize> nonce,
                          std::span<const uint8_t> aad, std::span<const uint8_t> ciphertext,
                          std::span<const uint8_t, kGcmTagSize> tag, std::span<uint8_t> plaintext);

 private:
  EVP_CIPHER_CTX* encrypt_ = nullptr;
  EVP_CIPHER_CTX* decrypt_ = nullptr;
};

// The calling thread's AeadContext (for per-file content and state keys).
AeadContext& ThreadAead();

// AES-256-GCM with a key that wraps other keys (a KEK, the keyring's wrap key). Each call uses
// its own EVP context and frees it before returning; OpenSSL cleanses a context's expanded key
// schedule when it is freed, so the schedule of a wrapping key never outlives the call in
// unlocked heap memory (unlike a thread's reusable context). Same contract as AeadContext.
void SealWithWrappingKey(std::span<const uint8_t> key,
                         std::span<const uint8_t, kGcmNonceSize> nonce,
                         std::span<const uint8_t> aad, std::span<const uint8_t> plaintext,
                         std::span<uint8_t> ciphertext, std::span<uint8_t, kGcmTagSize> tag);
[[nodiscard]] bool OpenWithWrappingKey(std::span<const uint8_t> key,
                                       std::span<const uint8_t, kGcmNonceSize> nonce,
                                       std::span<const uint8_t> aad,
                                       std::span<const uint8_t> ciphertext,
                                       std::span<const uint8_t, kGcmTagSize> tag,
                                       std::span<uint8_t> plaintext);

}  // namespace envelopefs
