// Keyring — the volume's versioned key-encryption keys (KEKs), `envelopefs.keyring`.
//
// A TOML file holding every KEK version (id, version, creation time, state) with its key
// wrapped (AES-256-GCM) under a key derived from the master key, the volume key (root of the
// name, xattr and audit keys), a master-key check value and an HMAC-SHA256 over the canonical
// contents and the config's identity. Since format 2 it also holds, under the same MAC, a
// generation (incremented by every change, so an older copy is recognisable), the master-key
// parameters (so changing the master key rewrites this one file) and the policy.
// Since format 3 everything is wrapped and MAC'ed under a random *keyring key*, and the keyring
// has master slots (like LUKS key slots): each names a master-key source and holds the keyring
// key wrapped under the master key that source produces, so any one slot opens the keyring
// (e.g. an HSM for daily use and a recovery key kept offline). In formats 1 and 2 the master key
// itself is the keyring key and there is one implicit slot. Opening verifies the check value
// (wrong key -> Error(kWrongKey)) and then the MAC (any edit of the keyring or the config ->
// Error(kConfig)). Older formats are read (a format-1 keyring: generation 0, master parameters
// and policy from the format-1 config) and written back in format 3, with a fresh keyring key.
// Unwrapped keys live in SecureBytes. Not synchronized: Volume serialises changes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "envelopefs/key_source.h"
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

// One master slot: a way into the keyring.
struct MasterSlot {
  static constexpr uint32_t kMaxSlots = 8;  // slot numbers are 1..kMaxSlots
  uint32_t number = 0;
  int64_t created_unix = 0;  // 0: unknown (the implicit slot of a format-1/2 keyring)
  MasterKeyParams params;    // how to get this slot's master key
  // The keyring key, AES-256-GCM-wrapped under a key derived from this slot's master key (nonce,
  // key, tag). Empty for the implicit slot of a format-1/2 keyring, whose master key is the
  // keyring key.
  std::vector<uint8_t> wrapped;
};

// What a source of master keys is, in a few words for messages and listings: "a key file",
// "a passphrase", PKCS#11 key "k" in token "t", KMIP key "42", ...
std::string DescribeMasterKey(const MasterKeyParams& params);
// "keyfile", "passphrase", "command", "pkcs11", "kmip" or "recovery" (the TOML source names).
const char* MasterKeyKindName(MasterKeyKind kind);

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

  // The master slots the file claims (unauthenticated until Open): format 3's slots, or the one
  // implicit slot of a format-1/2 keyring (its parameters from the format-1 config for a
  // format-1 keyring). Throws Error(kConfig) if there are none.
  std::vector<MasterSlot> slots(const VolumeConfig& config) const;
  // The keyring key, from the first of `source`'s slots that opens with the master key `source`
  // produces for it (each slot of the source's kind is tried; a key file, command or recovery
  // key is read once; after a source error other than kUsage, such as a wrong PIN or a KMS that
  // does not answer, no further slot is tried). Throws what the source throws when no slot could
  // be tried, Error(kUsage) naming the slots when none is of the source's kind, Error(kWrongKey)
  // when no slot opens.
  struct Unlocked {
    SecureBytes keyring_key;
    uint32_t slot = 0;       // the slot that opened
    SecureBytes master_key;  // that slot's master key (to follow later keyring keys)
  };
  Unlocked Unlock(const VolumeConfig& config, const MasterKeySource& source) const;
  // The keyring key held by slot `number` under `master_key`, or nullopt if there is no such slot
  // or it does not open with that key.
  std::optional<SecureBytes> UnwrapSlot(uint32_t number, const SecureBytes& master_key) const;
  int format() const { return format_; }
  // The master keys recorded as pending destruction (unauthenticated until Open).
  const std::vector<MasterKeyParams>& pending_destroy() const { return pending_; }
  // The policy the file claims (unauthenticated: only for decisions that need no key, such as
  // whether to log a failed unlock).
  VolumePolicy claimed_policy(const VolumeConfig& config) const;
  // The KEK versions the file claims, ordered by version (unauthenticated: only for reports
  // made without the key, which must say so). Throws Error(kConfig) if the file belongs to
  // another volume, has no single active version, or names a version twice.
  std::vector<KekInfo> claimed_keks(const VolumeConfig& config) const;
  const std::filesystem::path& path() const { return file_; }
  const std::string& digest() const { return digest_; }  // hex SHA-256 of the file's bytes

  // Authenticates everything under `keyring_key` together with `config`.
  Keyring Open(const VolumeConfig& config, const SecureBytes& keyring_key) const;

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
  std::vector<MasterSlot> slots_;          // format 3
  std::vector<MasterKeyParams> pending_;   // format 3
  std::optional<VolumePolicy> policy_;     // format 2
  std::vector<uint8_t> check_, volume_key_, mac_;
  std::vector<StoredKek> keks_;
};

class Keyring {
 public:
  Keyring() = default;  // empty; only for Load/CreateNew to assign over
  // A fresh keyring of volume `volume`: generation 1, one active KEK (random id, version 1), a
  // random volume key and keyring key, and slot 1 opening with `master_key` from `master`.
  static Keyring CreateNew(int64_t now_unix, const VolumeId& volume, const MasterKeyParams& master,
                           const SecureBytes& master_key, const VolumePolicy& policy);
  // Writes envelopefs.keyring (format 3) below `root_fd` crash-safely (temp file, fsync,
  // rename, fsync dir), MAC'ed under the keyring key, with the current generation; returns the
  // hex SHA-256 of the bytes written. A keyring read from format 1 or 2 first gets a fresh
  // keyring key, wrapped in its one slot under the master key it was opened with.
  std::string Save(int root_fd, const std::filesystem::path& cipher_dir,
                   const VolumeConfig& config);
  // This keyring's facts; `digest` is the hex SHA-256 of the file it was read from or saved to.
  KeyringFacts Facts(const std::string& digest) const;

  std::vector<KekInfo> keks() const;  // ordered by version
  KekInfo active() const;
  // The unwrapped KEK, or nullptr if the version is unknown or retired.
  const SecureBytes* kek(uint32_t id, uint32_t version) const;
  const SecureBytes& volume_key() const { return volume_key_; }
  uint64_t generation() const { return generation_; }
  void set_generation(uint64_t generation) { generation_ = generation; }
  const SecureBytes& keyring_key() const { return keyring_key_; }

  // The master slots, ordered by number.
  const std::vector<MasterSlot>& slots() const { return slots_; }
  // Adds a slot that opens with `master_key` (from `params`); returns its number (the lowest
  // free one). Error(kState) when all kMaxSlots are in use.
  uint32_t AddSlot(const MasterKeyParams& params, const SecureBytes& master_key, int64_t now_unix);
  // Error(kUsage) for an unknown slot, Error(kState) for the last one.
  void RemoveSlot(uint32_t number);
  // Slot `number` opens with `master_key` (from `params`) instead. When it is the only slot the
  // keyring key is renewed too, so that an old copy of the keyring opened with the old master
  // key yields nothing that opens this keyring. (With other slots the keyring key stays: they
  // hold it, wrapped under master keys this process does not have.)
  void ReplaceSlot(uint32_t number, const MasterKeyParams& params, const SecureBytes& master_key,
                   int64_t now_unix);
  // Master keys whose protecting HSM/KMS key is to be destroyed (keys retire
  // --destroy-old-master): recorded before the keyring stops using them, removed once destroyed,
  // so a crash in between leaves a record of what is still to destroy.
  const std::vector<MasterKeyParams>& pending_destroy() const { return pending_; }
  void AddPendingDestroy(const MasterKeyParams& params);
  void RemovePendingDestroy(const MasterKeyParams& params);
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
  // A keyring read from format 1 or 2 (its keyring key is the master key of its one implicit
  // slot) gets a fresh keyring key, wrapped in that slot. Called before any slot change or save.
  void UpgradeImplicitSlot();

  std::vector<Entry> entries_;
  SecureBytes volume_key_;
  SecureBytes keyring_key_;
  VolumeId volume_id_{};
  uint64_t generation_ = 1;
  std::vector<MasterSlot> slots_;
  std::vector<MasterKeyParams> pending_;
  VolumePolicy policy_;
};

}  // namespace envelopefs
