// The master key protected by an AES-256 key held by a KMIP key server (--kmip-server,
// --kmip-key-id, --tls-cert, --tls-key, --tls-ca; envelopectl init --kmip-create-key).
//
// The master key is 32 random bytes, stored in the keyring's [master_key] section encrypted by the
// server's Encrypt operation with AES-GCM: a random 96-bit IV we choose, a 128-bit tag, and AAD
// binding it to the volume id. What crosses the (mutual-TLS) connection: on init and
// change-master the master key itself, to be encrypted; on every open the encrypted key, IV, AAD
// and tag, and the master key back. The server's key never leaves the server. Retiring a master
// key revokes and destroys its server key (DestroyProtectingKey). One connection per call.
// Thread-safe (the last connection's audit fields are kept under a mutex).
#include <array>
#include <cstring>
#include <mutex>

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/kmip_client.h"

namespace envelopefs {

namespace {

constexpr char kAadLabel[] = "envelopefs kmip master key v1";

std::vector<uint8_t> Aad(const VolumeId& volume) {
  // The label with its NUL, then the volume id.
  std::vector<uint8_t> aad(sizeof kAadLabel + volume.size());
  std::memcpy(aad.data(), kAadLabel, sizeof kAadLabel);
  std::memcpy(aad.data() + sizeof kAadLabel, volume.data(), volume.size());
  return aad;
}

class KmipSource : public MasterKeySource {
 public:
  explicit KmipSource(KmipSourceOptions options)
      : options_(std::move(options)), server_(ParseHostPort(options_.server, "--kmip-server")) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kKmip; }

  MasterKeyParams NewParams(const VolumeId& volume) const override {
    KmipClient client = Connect();
    KmipParams p;
    if (options_.create_key) {
      p.key_id = client.CreateAesKey("envelopefs " + ToHex(volume));
      if (!KmipParams::IsValidKeyId(p.key_id)) {
        throw Error(ErrorKind::kIo, "KMS " + options_.server +
                                        ": the new key's identifier is not 1 to 64 printable "
                                        "characters");
      }
    } else if (options_.key_id) {
      p.key_id = *options_.key_id;
    } else {
      throw Error(ErrorKind::kUsage,
                  "a new KMIP master key needs --kmip-key-id ID (a key on the server) or "
                  "--kmip-create-key");
    }
    {
      std::lock_guard lock(mutex_);
      made_for_key_id_ = p.key_id;  // MasterKey of these params follows (Volume::Create)
    }
    RandomBytes(p.iv);
    SecureBytes master = SecureBytes::Random(kKeySize);
    KmipClient::Sealed sealed = client.EncryptGcm(p.key_id, p.iv, Aad(volume), master.span());
    std::copy(sealed.ciphertext.begin(), sealed.ciphertext.end(), p.wrapped.begin());
    std::copy(sealed.tag.begin(), sealed.tag.end(), p.wrapped.begin() + kKeySize);
    MasterKeyParams params;
    params.kind = MasterKeyKind::kKmip;
    params.kmip = p;
    return params;
  }

  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId& volume) const override {
    if (params.kind != MasterKeyKind::kKmip || !params.kmip) throw WrongSourceError(params);
    const KmipParams& p = *params.kmip;
    // The key id in the keyring is read before anything is authenticated: used on its own, a
    // keyring forged under another key this client may use would open (and new files would go
    // under KEKs its author knows). So the id is always the one the user gave (or this source
    // just created), like a PKCS#11 key's label.
    std::optional<std::string> pinned = options_.key_id;
    {
      std::lock_guard lock(mutex_);
      if (!pinned) pinned = made_for_key_id_;
    }
    if (!pinned) {
      throw Error(ErrorKind::kUsage,
                  "give the KMIP key's id with --kmip-key-id ID (the keyring names \"" + p.key_id +
                      "\", but that is not authenticated until the key has opened the keyring)");
    }
    if (*pinned != p.key_id) {
      throw Error(ErrorKind::kUsage, "this volume's master key is protected by KMIP key \"" +
                                         p.key_id + "\", not \"" + *pinned + "\"");
    }
    KmipClient client = Connect();
    std::span<const uint8_t> wrapped(p.wrapped);
    SecureBytes master = client.DecryptGcm(p.key_id, p.iv, Aad(volume), wrapped.first(kKeySize),
                                           wrapped.subspan(kKeySize));
    if (master.size() != kKeySize) {
      throw Error(ErrorKind::kWrongKey, "the KMS decrypted a master key of the wrong size");
    }
    return master;
  }

  std::map<std::string, std::string> AuditFields() const override {
    std::lock_guard lock(mutex_);
    return audit_;
  }

  // Revoke (Cessation of Operation) then Destroy; a key that is not Active is destroyed as it
  // is, one that is not there counts as destroyed. Never the key given with --kmip-key-id.
  std::string DestroyProtectingKey(const MasterKeyParams& params, const VolumeId&) const override {
    if (params.kind != MasterKeyKind::kKmip || !params.kmip) throw WrongSourceError(params);
    const std::string& id = params.kmip->key_id;
    const std::string what = "kmip key \"" + id + "\" on " + options_.server;
    if (options_.key_id && *options_.key_id == id) {
      throw Error(ErrorKind::kUsage, "refusing to destroy KMIP key \"" + id +
                                         "\": it is the key given with --kmip-key-id, which "
                                         "protects the current master key");
    }
    KmipClient client = Connect();
    if (client.Revoke(id) == KmipClient::Outcome::kNotFound ||
        client.Destroy(id) == KmipClient::Outcome::kNotFound) {
      return what + " (already gone)";
    }
    return what;
  }

 private:
  KmipClient Connect() const {
    std::map<std::string, std::string> fields = {{"kms", options_.server}};
    {
      std::lock_guard lock(mutex_);
      audit_ = fields;
    }
    KmipClient client(server_, options_.tls);
    fields["tls_protocol"] = client.protocol();
    fields["tls_cipher"] = client.cipher();
    std::lock_guard lock(mutex_);
    audit_ = fields;
    return client;
  }

  KmipSourceOptions options_;
  HostPort server_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::string> audit_;
  mutable std::optional<std::string> made_for_key_id_;  // the key of the last NewParams
};

}  // namespace

std::unique_ptr<MasterKeySource> MakeKmipSource(const KmipSourceOptions& options) {
  return std::make_unique<KmipSource>(options);
}

}  // namespace envelopefs
