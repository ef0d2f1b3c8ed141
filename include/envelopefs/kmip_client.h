// KmipClient — the few KMIP 1.4 operations envelopefs asks of a key server, over one mutual-TLS
// connection under the transit policy (tls_client.h): Create (an AES-256 key for Encrypt and
// Decrypt) then Activate, Encrypt/Decrypt with AES-GCM under a key the server holds, and Revoke
// then Destroy to retire such a key. The
// key never leaves the server: only the master key (to be encrypted) and its encrypted form, IV,
// AAD and tag cross the connection. Messages are TTLV (kmip_ttlv.h); everything the server sends
// is untrusted and bounded. Every failure throws Error with one line: kIo for a server that cannot
// be reached or breaks the TLS policy or the protocol, kUsage for a key the server does not have
// or will not let us use, kWrongKey for a ciphertext the server cannot authenticate.
// Not thread-safe: one client per thread.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
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

  // What Revoke and Destroy found. kNotFound: the server has no key `key_id` (result reason Item
  // Not Found: never created, or already destroyed). kNotActive (Revoke only): the server will
  // not revoke the key for Cessation of Operation because it is not Active (result reason
  // Illegal Operation: already deactivated, compromised or never activated), so it can be
  // destroyed as it is.
  enum class Outcome { kDone, kNotFound, kNotActive };
  // Revokes key `key_id` with revocation reason Cessation of Operation: an Active key becomes
  // Deactivated, which servers require before Destroy. Any other refusal (e.g. Permission Denied:
  // the key is not ours) throws as the other calls do.
  Outcome Revoke(const std::string& key_id);
  // Destroys key `key_id` (its key material; the server may keep its metadata). Never kNotActive;
  // an Active key is refused (revoke it first).
  Outcome Destroy(const std::string& key_id);

  // What the TLS handshake negotiated (for the audit log).
  const std::string& protocol() const;
  const std::string& cipher() const;

 private:
  // Sends one request with one batch item and returns that item's response payload (empty when
  // the response has none), or throws naming `what` and the server's reason. When the server
  // refuses with a result reason listed in `tolerated`, stores it in `*refused` and returns an
  // empty payload instead of throwing.
  TtlvItem Call(uint32_t operation, std::vector<TtlvItem> payload, const char* what,
                std::initializer_list<int64_t> tolerated = {}, int64_t* refused = nullptr);
  // Revoke or Destroy: one key id out, the same key id back.
  Outcome CallOnKey(uint32_t operation, std::vector<TtlvItem> payload, const std::string& key_id,
                    const char* what, std::initializer_list<int64_t> tolerated);

  std::string endpoint_;
  std::unique_ptr<TlsConnection> connection_;
};

}  // namespace envelopefs
