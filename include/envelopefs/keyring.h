// Keyring — the volume's versioned key-encryption keys (KEKs), `envelopefs.keyring`.
//
// A TOML file holding every KEK version (id, version, creation time, state) with its key
// wrapped (AES-256-GCM) under a key derived from the master key, plus the volume key (root of
// the name and xattr keys), a master-key check value and an HMAC-SHA256 over the canonical
// contents and the config's authenticated fields. Opening it verifies the check value (wrong
// key -> Error(kWrongKey)) and then the MAC (any edit -> Error(kConfig) naming the file).
// Unwrapped keys live in SecureBytes. Not synchronized: callers serialize mutation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "envelopefs/secure_bytes.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

enum class KekState { kActive, kDecryptOnly, kRetired };
const char* KekStateName(KekState state);  // "active", "decrypt-only", "retired"

struct KekInfo {
  uint32_t id = 0;
  uint32_t version = 0;
  int64_t created_unix = 0;
  KekState state = KekState::kActive;
};

class Keyring {
 public:
  Keyring() = default;  // empty; only for Load/CreateNew to assign over
  // A fresh keyring: one active KEK (random id, version 1) and a random volume key.
  static Keyring CreateNew(int64_t now_unix);
  // Loads and authenticates `cipher_dir/envelopefs.keyring` for `config` with `master_key`.
  static Keyring Load(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                      const SecureBytes& master_key);
  // Writes crash-safely (temp file, fsync, rename, fsync dir), MAC'ed under `master_key`.
  void Save(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
            const SecureBytes& master_key) const;
  // The same for an explicit keyring file (used for the staged keyring of change-master).
  static Keyring LoadFile(const std::filesystem::path& file, const VolumeConfig& config,
                          const SecureBytes& master_key);
  void SaveFile(const std::filesystem::path& file, const VolumeConfig& config,
                const SecureBytes& master_key) const;

  std::vector<KekInfo> keks() const;  // ordered by version
  KekInfo active() const;
  // The unwrapped KEK, or nullptr if the version is unknown or retired.
  const SecureBytes* kek(uint32_t id, uint32_t version) const;
  const SecureBytes& volume_key() const { return volume_key_; }

  KekInfo Rotate(int64_t now_unix);  // new active version; the old active becomes decrypt-only
  void Retire(uint32_t version);  // destroys that version's key material; Error(kState) if active

 private:
  struct Entry {
    KekInfo info;
    SecureBytes key;  // empty when retired
  };
  std::vector<Entry> entries_;
  SecureBytes volume_key_;
};

}  // namespace envelopefs
