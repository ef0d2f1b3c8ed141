// KmipClient — the few KMIP 1.4 operations envelopefs asks of a key server, over one mutual-TLS
// connection under the transit policy (tls_client.h): Create (an AES-256 key for Encrypt and
// Decrypt) then Activate, and Encrypt/Decrypt with AES-GCM under a key the server holds. The
// key never leaves the server: only the master key (to be encrypted) and its encrypted form, IV,
// AAD and tag cross the connection. Messages are TTLV (kmip_ttlv.h); everything the server sends
// is untrusted and bounded. Every failure throws Error with one line: kIo for a server that cannot
// be reached or breaks the TLS policy or the protocol, kUsage for a key the server does not have
// or will not let us use, kWrongKey for a ciphertext the server cannot authenticate.
// Not thread-safe: one client per thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/kmip_ttlv.h"
#include "envelopefs/secure_bytes.h"
#include "envelopefs/tls_client.h"

namespace envelopefs {

inline constexpr size_t kKmipGcmIvSize = 12;
inline constexpr size_t kKmipGcmTagSize = 16;

class KmipClient {
 public:
  // Connects (TlsConnection::Connect) to `server`.
  KmipClient(const HostPort& server, const TlsClientOptions& tls);
  ~KmipClient();
  KmipClient(KmipClient&&) noexcept;

  // Creates an AES-256 key (usage: Encrypt, Decrypt) named `name`, activates it and returns its
  // unique identifier.
  std::string CreateAesKey(const std::string& name);

  struct Sealed {
    std::vector<uint8_t> ciphertext;
    std::array<uint8_t, kKmipGcmTagSize> tag{};
  };
  // AES-GCM with key `key_id`, our IV, AAD and a 128-bit tag.
  Sealed EncryptGcm(const std::string& key_id, std::span<const uint8_t> iv,
                    std::span<const uint8_t> aad, std::span<const uint8_t> plaintext);
  SecureBytes DecryptGcm(const std::string& key_id, std::span<const uint8_t> iv,
                         std::span<const uint8_t> aad, std::span<const uint8_t> ciphertext,
                         std::span<const uint8_t> tag);

  // What the TLS handshake negotiated (for the audit log).
  const std::string& protocol() const;
  const std::string& cipher() const;

 private:
  // Sends one request with one batch item and returns that item's response payload (empty when
  // the response has none), or throws naming `what` and the server's reason.
  TtlvItem Call(uint32_t operation, std::vector<TtlvItem> payload, const char* what);

  std::string endpoint_;
  std::unique_ptr<TlsConnection> connection_;
};

}  // namespace envelopefs
