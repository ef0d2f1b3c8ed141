// Keyring — the volume's versioned key-encryption keys (KEKs), `envelopefs.keyring`.
//
// A TOML file holding every KEK version (id, version, creation time, state) with its key
// wrapped (AES-256-GCM) under a key derived from the master key, the volume key (root of the
// name, xattr and audit keys), a master-key check value and an HMAC-SHA256 over the canonical
// contents and the config's identity. Since format 2 it also holds, under the same MAC, a
// generation (incremented by every change, so an older copy is recognisable), the master-key
// parameters (so changing the master key rewrites this one file) and the policy. Opening it
// verifies the check value (wrong key -> Error(kWrongKey)) and then the MAC (any edit of the
// keyring or the config -> Error(kConfig)). A format-1 keyring is read (generation 0, master
// parameters and policy from the format-1 config) and written back in format 2.
// Unwrapped keys live in SecureBytes. Not synchronized: Volume serialises changes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "envelopefs/secure_bytes.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

// How every keyring file this version writes begins (also a temporary copy of one).
inline constexpr char kKeyringHeadline[] = "# envelopefs keyring";

enum class KekState { kActive, kDecryptOnly, kRetired };
const char* KekStateName(KekState state);  // "active", "decrypt-only", "retired"

struct KekInfo {
  uint32_t id = 0;
  uint32_t version = 0;
  int64_t created_unix = 0;
  KekState state = KekState::kActive;
};

class Keyring;

// What decides whether one keyring may replace another: keyrings only move forward. A newer
// keyring has a higher generation (or the very same contents), never a lower highest KEK
// version, and never brings back a version that was retired. Format-1 keyrings all have
// generation 0, so only the KEK rules tell them apart.
struct KeyringFacts {
  uint64_t generation = 0;
  std::string digest;  // hex SHA-256 of the file's bytes
  uint32_t max_kek_version = 0;
  std::vector<uint32_t> retired;  // sorted
};
// Why `fresh` would be a step back from `known` (one line), or nullopt if it may replace it.
std::optional<std::string> KeyringRegression(const KeyringFacts& known, const KeyringFacts& fresh);

// One [[kek]] entry of the keyring file as stored.
struct StoredKek {
  KekInfo info;
  std::vector<uint8_t> wrapped;  // empty when retired
};

// A keyring file as read: parsed, not yet authenticated.
class KeyringFile {
 public:
  // Reads envelopefs.keyring below `root_fd` (never through a symlink). Throws Error(kConfig)
  // naming the file if it is missing, not a regular file, empty or not TOML.
  static KeyringFile Read(int root_fd, const std::filesystem::path& cipher_dir);
  static KeyringFile Parse(const std::string& text, const std::filesystem::path& file);

  // How to get the master key: the keyring's own parameters (format 2) or the format-1
  // config's. Throws Error(kConfig) if there are none.
  MasterKeyParams master_params(const VolumeConfig& config) const;
  // The policy the file claims (unauthenticated: only for decisions that need no key, such as
  // whether to log a failed unlock).
  VolumePolicy claimed_policy(const VolumeConfig& config) const;
  // The KEK versions the file claims, ordered by version (unauthenticated: only for reports
  // made without the key, which must say so). Throws Error(kConfig) if the file belongs to
  // another volume, has no single active version, or names a version twice.
  std::vector<KekInfo> claimed_keks(const VolumeConfig& config) const;
  const std::filesystem::path& path() const { return file_; }
  const std::string& digest() const { return digest_; }  // hex SHA-256 of the file's bytes

  // Authenticates everything under `master_key` together with `config`.
  Keyring Open(const VolumeConfig& config, const SecureBytes& master_key) const;

 private:
  KeyringFile() = default;
  static VolumePolicy LegacyPolicy(const VolumeConfig& config);
  // Error(kConfig) unless this file's volume_id is `config`'s.
  void CheckBelongsTo(const VolumeConfig& config) const;
  // Error(kConfig) unless exactly one version is active and none appears twice; sorts by version.
  void CheckKekSet(std::vector<KekInfo>& keks) const;
  std::filesystem::path file_;
  std::string digest_;
  int format_ = 0;
  std::vector<uint8_t> volume_id_;
  uint64_t generation_ = 0;                // format 2
  std::optional<MasterKeyParams> master_;  // format 2
  std::optional<VolumePolicy> policy_;     // format 2
  std::vector<uint8_t> check_, volume_key_, mac_;
  std::vector<StoredKek> keks_;
};

class Keyring {
 public:
  Keyring() = default;  // empty; only for Load/CreateNew to assign over
  // A fresh keyring: generation 1, one active KEK (random id, version 1), a random volume key.
  static Keyring CreateNew(int64_t now_unix, const MasterKeyParams& master,
                           const VolumePolicy& policy);
  // Writes envelopefs.keyring (format 2) below `root_fd` crash-safely (temp file, fsync,
  // rename, fsync dir), MAC'ed under `master_key`, with the current generation; returns the
  // hex SHA-256 of the bytes written.
  std::string Save(int root_fd, const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                   const SecureBytes& master_key) const;
  // This keyring's facts; `digest` is the hex SHA-256 of the file it was read from or saved to.
  KeyringFacts Facts(const std::string& digest) const;

  std::vector<KekInfo> keks() const;  // ordered by version
  KekInfo active() const;
  // The unwrapped KEK, or nullptr if the version is unknown or retired.
  const SecureBytes* kek(uint32_t id, uint32_t version) const;
  const SecureBytes& volume_key() const { return volume_key_; }
  uint64_t generation() const { return generation_; }
  void set_generation(uint64_t generation) { generation_ = generation; }
  const MasterKeyParams& master_params() const { return master_; }
  void set_master_params(const MasterKeyParams& master) { master_ = master; }
  const VolumePolicy& policy() const { return policy_; }
  void set_policy(const VolumePolicy& policy) { policy_ = policy; }

  KekInfo Rotate(int64_t now_unix);  // new active version; the old active becomes decrypt-only
  void Retire(uint32_t version);  // destroys that version's key material; Error(kState) if active

 private:
  friend class KeyringFile;
  struct Entry {
    KekInfo info;
    SecureBytes key;  // empty when retired
  };
  std::vector<Entry> entries_;
  SecureBytes volume_key_;
  uint64_t generation_ = 1;
  MasterKeyParams master_;
  VolumePolicy policy_;
};

}  // namespace envelopefs
