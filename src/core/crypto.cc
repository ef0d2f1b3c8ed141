#include "envelopefs/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "envelopefs/error.h"

namespace envelopefs {
namespace {

const EVP_CIPHER* Aes256Gcm() {
  // Fetched once: implicit fetching on every init is a measurable cost in OpenSSL 3.
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (cipher == nullptr) ThrowOpenSslError("EVP_CIPHER_fetch(AES-256-GCM)");
  return cipher;
}

int IntSize(size_t n) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorKind::kIo, "AEAD message too large");
  }
  return static_cast<int>(n);
}

}  // namespace

void ThrowOpenSslError(const char* what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  throw Error(ErrorKind::kIo, std::string("OpenSSL ") + what + " failed: " + buf);
}

void ThrowSystemError(const std::string& what) {
  throw Error(ErrorKind::kIo, what + ": " + std::strerror(errno));
}

void EnsureCryptoInitialized() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = sodium_init() >= 0; });
  if (!ok) throw Error(ErrorKind::kIo, "libsodium initialization failed");
}

void RandomBytes(std::span<uint8_t> out) {
  EnsureCryptoInitialized();
  randombytes_buf(out.data(), out.size());
}

GcmNonce RandomNonce() {
  GcmNonce nonce;
  RandomBytes(nonce);
  return nonce;
}

void HkdfSha256(std::span<const uint8_t> key, std::string_view label, std::span<uint8_t> out) {
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) ThrowOpenSslError("EVP_KDF_fetch(HKDF)");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  if (ctx == nullptr) ThrowOpenSslError("EVP_KDF_CTX_new");
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(key.data()),
                                        key.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(label.data()),
                                        label.size()),
      OSSL_PARAM_construct_end()};
  int rc = EVP_KDF_derive(ctx, out.data(), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (rc != 1) ThrowOpenSslError("HKDF");
}

SecureBytes DeriveKey(std::span<const uint8_t> key, std::string_view label) {
  SecureBytes out(kKeySize);
  HkdfSha256(key, label, out.mutable_span());
  return out;
}

Sha256Digest HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  Sha256Digest out;
  size_t out_len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(), data.data(),
                data.size(), out.data(), out.size(), &out_len) == nullptr ||
      out_len != out.size()) {
    ThrowOpenSslError("HMAC-SHA256");
  }
  return out;
}

Sha256Digest Sha256(std::span<const uint8_t> data) {
  Sha256Digest out;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
    ThrowOpenSslError("SHA-256");
  }
  return out;
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

AeadContext::AeadContext() : encrypt_(EVP_CIPHER_CTX_new()), decrypt_(EVP_CIPHER_CTX_new()) {
  if (encrypt_ == nullptr || decrypt_ == nullptr) ThrowOpenSslError("EVP_CIPHER_CTX_new");
  if (EVP_EncryptInit_ex2(encrypt_, Aes256Gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_DecryptInit_ex2(decrypt_, Aes256Gcm(), nullptr, nullptr, nullptr) != 1) {
    ThrowOpenSslError("AES-256-GCM init");
  }
}

AeadContext::~AeadContext() {
  EVP_CIPHER_CTX_free(encrypt_);  // cleanses the expanded key
  EVP_CIPHER_CTX_free(decrypt_);
}

void AeadContext::Seal(std::span<const uint8_t> key, std::span<const uint8_t, kGcmNonceSize> nonce,
                       std::span<const uint8_t> aad, std::span<const uint8_t> plaintext,
                       std::span<uint8_t> ciphertext, std::span<uint8_t, kGcmTagSize> tag) {
  if (key.size() != kKeySize || ciphertext.size() != plaintext.size()) {
    throw std::invalid_argument("AeadContext::Seal: bad sizes");
  }
  // The key is installed on every call: caching by address would be unsafe once a freed key
  // buffer is reused. Expanding an AES key costs far less than sealing one chunk.
  if (EVP_EncryptInit_ex2(encrypt_, nullptr, key.data(), nonce.data(), nullptr) != 1) {
    ThrowOpenSslError("GCM seal init");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(encrypt_, nullptr, &len, aad.data(), IntSize(aad.size())) != 1) {
    ThrowOpenSslError("GCM seal aad");
  }
  if (!plaintext.empty() && EVP_EncryptUpdate(encrypt_, ciphertext.data(), &len, plaintext.data(),
                                              IntSize(plaintext.size())) != 1) {
    ThrowOpenSslError("GCM seal");
  }
  if (EVP_EncryptFinal_ex(encrypt_, ciphertext.data() + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(encrypt_, EVP_CTRL_AEAD_GET_TAG, kGcmTagSize, tag.data()) != 1) {
    ThrowOpenSslError("GCM seal final");
  }
}

bool AeadContext::Open(std::span<const uint8_t> key, std::span<const uint8_t, kGcmNonceSize> nonce,
                       std::span<const uint8_t> aad, std::span<const uint8_t> ciphertext,
                       std::span<const uint8_t, kGcmTagSize> tag, std::span<uint8_t> plaintext) {
  if (key.size() != kKeySize || ciphertext.size() != plaintext.size()) {
    throw std::invalid_argument("AeadContext::Open: bad sizes");
  }
  if (EVP_DecryptInit_ex2(decrypt_, nullptr, key.data(), nonce.data(), nullptr) != 1) {
    ThrowOpenSslError("GCM open init");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(decrypt_, nullptr, &len, aad.data(), IntSize(aad.size())) != 1) {
    ThrowOpenSslError("GCM open aad");
  }
  if (!ciphertext.empty() && EVP_DecryptUpdate(decrypt_, plaintext.data(), &len, ciphertext.data(),
                                               IntSize(ciphertext.size())) != 1) {
    ThrowOpenSslError("GCM open");
  }
  if (EVP_CIPHER_CTX_ctrl(decrypt_, EVP_CTRL_AEAD_SET_TAG, kGcmTagSize,
                          const_cast<uint8_t*>(tag.data())) != 1) {
    ThrowOpenSslError("GCM set tag");
  }
  return EVP_DecryptFinal_ex(decrypt_, plaintext.data() + ciphertext.size(), &len) == 1;
}

AeadContext& ThreadAead() {
  thread_local AeadContext context;
  return context;
}

void SealWithWrappingKey(std::span<const uint8_t> key,
                         std::span<const uint8_t, kGcmNonceSize> nonce,
                         std::span<const uint8_t> aad, std::span<const uint8_t> plaintext,
                         std::span<uint8_t> ciphertext, std::span<uint8_t, kGcmTagSize> tag) {
  AeadContext context;  // freed (and cleansed) on return
  context.Seal(key, nonce, aad, plaintext, ciphertext, tag);
}

bool OpenWithWrappingKey(std::span<const uint8_t> key,
                         std::span<const uint8_t, kGcmNonceSize> nonce,
                         std::span<const uint8_t> aad, std::span<const uint8_t> ciphertext,
                         std::span<const uint8_t, kGcmTagSize> tag, std::span<uint8_t> plaintext) {
  AeadContext context;
  return context.Open(key, nonce, aad, ciphertext, tag, plaintext);
}

}  // namespace envelopefs
