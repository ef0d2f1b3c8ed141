// The master key protected by an AES key in a PKCS#11 token (--pkcs11-module, --pkcs11-token,
// --pkcs11-key, the PIN from --pin-file or ENVELOPEFS_PKCS11_PIN).
//
// The master key is 32 random bytes, stored in the keyring's [master_key] section encrypted by
// the token with CKM_AES_GCM: a random 96-bit IV, a 128-bit tag, and AAD binding it to the
// volume id. C_Encrypt/C_Decrypt rather than C_WrapKey/C_UnwrapKey: unwrapping would create a
// key object on the token that would have to be extractable to give us its bytes, and the
// standard AES key-wrap mechanisms take no AAD. The token key never leaves the token. Each call
// loads the module, logs in, does one operation and logs out (Pkcs11Token). Retiring a master key
// destroys its token key (C_DestroyObject; DestroyProtectingKey). Thread-safe.
#include <array>
#include <cstdlib>
#include <cstring>

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "pkcs11_token.h"
#include "secret_input.h"

namespace envelopefs {

namespace {

constexpr char kAadLabel[] = "envelopefs pkcs11 master key v1";
constexpr size_t kMaxPin = 256;

// The CKA_ID of a token key envelopefs creates: this prefix, then the volume id. It tells which
// volume a key was made for, so that a key is never shared by accident (NewParams) and never
// destroyed for another volume (DestroyProtectingKey).
constexpr char kKeyIdPrefix[] = "envelopefs volume ";

std::vector<uint8_t> KeyBinding(const VolumeId& volume) {
  std::vector<uint8_t> id(kKeyIdPrefix, kKeyIdPrefix + sizeof kKeyIdPrefix - 1);
  id.insert(id.end(), volume.begin(), volume.end());
  return id;
}

// The volume a token key was created for by envelopefs, if its CKA_ID says so.
std::optional<VolumeId> BoundVolume(const std::vector<uint8_t>& id) {
  const size_t prefix = sizeof kKeyIdPrefix - 1;
  VolumeId volume{};
  if (id.size() != prefix + volume.size() || std::memcmp(id.data(), kKeyIdPrefix, prefix) != 0) {
    return std::nullopt;
  }
  std::copy(id.begin() + static_cast<long>(prefix), id.end(), volume.begin());
  return volume;
}

std::vector<uint8_t> Aad(const VolumeId& volume) {
  // The label with its NUL, then the volume id.
  std::vector<uint8_t> aad(sizeof kAadLabel + volume.size());
  std::memcpy(aad.data(), kAadLabel, sizeof kAadLabel);
  std::memcpy(aad.data() + sizeof kAadLabel, volume.data(), volume.size());
  return aad;
}

class Pkcs11Source : public MasterKeySource {
 public:
  explicit Pkcs11Source(Pkcs11SourceOptions options) : options_(std::move(options)) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kPkcs11; }

  MasterKeyParams NewParams(const VolumeId& volume) const override {
    Pkcs11Token token(options_.module, options_.token_label, Pin());
    std::optional<Pkcs11Token::Handle> key = token.FindAesKey(options_.key_label);
    if (!key && !options_.create_key) {
      throw Error(ErrorKind::kUsage, "PKCS#11 token \"" + options_.token_label +
                                         "\" has no AES key labelled \"" + options_.key_label +
                                         "\" (add --pkcs11-create-key to create it)");
    }
    if (key) {
      // An existing key: never one that envelopefs made for another volume (retiring that
      // volume's key would destroy it under this one).
      std::optional<VolumeId> bound = BoundVolume(token.KeyId(*key));
      if (bound && *bound != volume) {
        throw Error(ErrorKind::kUsage,
                    "PKCS#11 key \"" + options_.key_label + "\" in token \"" +
                        options_.token_label + "\" was created for envelopefs volume " +
                        ToHex(*bound) +
                        ": give this volume a key of its own (another --pkcs11-key)");
      }
    } else {
      key = token.CreateAesKey(options_.key_label, KeyBinding(volume));
    }
    MasterKeyParams params;
    params.kind = MasterKeyKind::kPkcs11;
    Pkcs11Params p;
    p.token_label = options_.token_label;
    p.key_label = options_.key_label;
    RandomBytes(p.iv);
    SecureBytes master = SecureBytes::Random(kKeySize);
    std::vector<uint8_t> sealed = token.EncryptGcm(*key, p.iv, Aad(volume), master.span());
    if (sealed.size() != p.wrapped.size()) {
      throw Error(ErrorKind::kIo, "PKCS#11 token returned an unexpected ciphertext size");
    }
    std::copy(sealed.begin(), sealed.end(), p.wrapped.begin());
    params.pkcs11 = p;
    return params;
  }

  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId& volume) const override {
    if (params.kind != MasterKeyKind::kPkcs11 || !params.pkcs11) throw WrongSourceError(params);
    const Pkcs11Params& p = *params.pkcs11;
    if (p.token_label != options_.token_label || p.key_label != options_.key_label) {
      throw Error(ErrorKind::kUsage, "this volume's master key is protected by PKCS#11 key \"" +
                                         p.key_label + "\" in token \"" + p.token_label +
                                         "\", not key \"" + options_.key_label + "\" in token \"" +
                                         options_.token_label + "\"");
    }
    Pkcs11Token token(options_.module, options_.token_label, Pin());
    std::optional<Pkcs11Token::Handle> key = token.FindAesKey(options_.key_label);
    if (!key) {
      throw Error(ErrorKind::kUsage, "PKCS#11 token \"" + options_.token_label +
                                         "\" has no AES key labelled \"" + options_.key_label +
                                         "\": this volume's master key cannot be decrypted");
    }
    SecureBytes master = token.DecryptGcm(*key, p.iv, Aad(volume), p.wrapped);
    if (master.size() != kKeySize) {
      throw Error(ErrorKind::kWrongKey,
                  "the PKCS#11 token decrypted a master key of the wrong size");
    }
    return master;
  }

  // Never the key this source is configured with (key_source.h): that one protects the master
  // key the volume has now. The old key's token is opened with this source's module and PIN.
  std::string DestroyProtectingKey(const MasterKeyParams& params,
                                   const VolumeId& volume) const override {
    if (params.kind != MasterKeyKind::kPkcs11 || !params.pkcs11) throw WrongSourceError(params);
    const Pkcs11Params& p = *params.pkcs11;
    const std::string what = "pkcs11 token \"" + p.token_label + "\" key \"" + p.key_label + "\"";
    if (p.token_label == options_.token_label && p.key_label == options_.key_label) {
      throw Error(ErrorKind::kUsage, "refusing to destroy PKCS#11 key \"" + p.key_label +
                                         "\" in token \"" + p.token_label +
                                         "\": it is the key given with --pkcs11-key, which "
                                         "protects the current master key");
    }
    Pkcs11Token token(options_.module, p.token_label, Pin());
    std::optional<Pkcs11Token::Handle> key = token.FindAesKey(p.key_label);
    if (!key) return what + " (already gone)";
    CheckBoundTo(token, *key, p, volume);
    if (!token.DestroyKey(*key)) return what + " (already gone)";
    if (token.FindAesKey(p.key_label)) {
      throw Error(ErrorKind::kIo, "PKCS#11 token \"" + p.token_label + "\" still holds key \"" +
                                      p.key_label + "\" after destroying it");
    }
    return what;
  }

  void CheckCanDestroy(const MasterKeyParams& params, const VolumeId& volume) const override {
    if (params.kind != MasterKeyKind::kPkcs11 || !params.pkcs11) throw WrongSourceError(params);
    const Pkcs11Params& p = *params.pkcs11;
    Pkcs11Token token(options_.module, p.token_label, Pin());
    if (std::optional<Pkcs11Token::Handle> key = token.FindAesKey(p.key_label)) {
      CheckBoundTo(token, *key, p, volume);
    }
  }

 private:
  // Error(kUsage) unless envelopefs created token key `key` for `volume` (its CKA_ID).
  static void CheckBoundTo(Pkcs11Token& token, Pkcs11Token::Handle key, const Pkcs11Params& p,
                           const VolumeId& volume) {
    if (BoundVolume(token.KeyId(key)) != volume) {
      throw Error(ErrorKind::kUsage,
                  "refusing to destroy PKCS#11 key \"" + p.key_label + "\" in token \"" +
                      p.token_label +
                      "\": envelopefs did not create it for this volume (its CKA_ID), so other "
                      "volumes may depend on it; destroy it yourself once none does");
    }
  }

  SecureBytes Pin() const {
    if (options_.pin_file) {
      UniqueFd fd = OpenSecretFile(*options_.pin_file, "PIN file", options_.allow_insecure);
      SecureBytes pin = FirstLine(ReadLocked(fd.get(), kMaxPin, "PIN file " + *options_.pin_file));
      if (pin.empty())
        throw Error(ErrorKind::kUsage, "PIN file " + *options_.pin_file + " is empty");
      return pin;
    }
    const char* env = std::getenv(options_.pin_env.c_str());
    if (env == nullptr || *env == '\0') {
      throw Error(ErrorKind::kUsage, "no PIN for PKCS#11 token \"" + options_.token_label +
                                         "\": use --pin-file FILE or set " + options_.pin_env);
    }
    return SecureBytes::Copy(AsBytes(env));
  }

  Pkcs11SourceOptions options_;
};

}  // namespace

std::unique_ptr<MasterKeySource> MakePkcs11Source(const Pkcs11SourceOptions& options) {
  return std::make_unique<Pkcs11Source>(options);
}

}  // namespace envelopefs
