// Volume — an unlocked envelopefs volume: config, keyring and the keys derived from them.
//
// Open() reads the config, asks the MasterKeySource for the master key, authenticates the
// keyring, checks its generation against what this host has seen (HostState: an older keyring
// is a rollback and is refused) and derives the name, xattr and audit keys. The master key stays
// in locked memory (needed to re-authenticate the keyring when envelopectl changes it) and is
// wiped when the Volume dies. Create() makes a new volume in an empty (or missing) directory.
// Every volume file is opened relative to the cipher dir's descriptor, never through a symlink.
// Keyring changes (UpdateKeyring, ChangeMasterKey) hold an advisory lock beside the keyring
// across other processes, re-read the keyring under it and write generation + 1, so racing
// envelopectl commands never lose a version; each is one atomic file replacement.
// Errors: throws Error(kind) (see error.h). Thread-safe for reads after construction;
// ReloadKeyringIfChanged() swaps the keyring under a lock so a running daemon picks up a rotation
// without remount, never a lower generation.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "envelopefs/cipher_header.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/key_source.h"
#include "envelopefs/keyring.h"
#include "envelopefs/secure_bytes.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

struct CreateOptions {
  uint32_t chunk_size = 0;  // 0: the default
  bool plaintext_names = false;
};

class Volume : public KekSource {
 public:
  static std::unique_ptr<Volume> Create(const std::filesystem::path& cipher_dir,
                                        const CreateOptions& options,
                                        const MasterKeySource& source);
  static std::unique_ptr<Volume> Open(const std::filesystem::path& cipher_dir,
                                      const MasterKeySource& source);

  const std::filesystem::path& cipher_dir() const { return cipher_dir_; }
  // The cipher dir, opened once (O_PATH): every volume file and every path a tool derives from
  // the cipher dir is opened relative to it, never through a symlink (see beneath.h).
  int root_fd() const { return root_fd_.get(); }
  const VolumeConfig& config() const { return config_; }

  // The KEK new files are wrapped under, and lookup of any unretired version.
  // Both copy the key so callers never hold a pointer into a keyring that may be swapped.
  struct KekCopy {
    KekInfo info;
    SecureBytes key;
  };
  KekCopy ActiveKek() const;
  bool FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const override;
  std::vector<KekInfo> Keks() const;

  const SecureBytes& name_key() const { return name_key_; }    // 64 bytes, AES-256-SIV
  const SecureBytes& xattr_key() const { return xattr_key_; }  // 32 bytes, AES-256-GCM
  const SecureBytes& audit_key() const { return audit_key_; }  // 32 bytes, HMAC-SHA256

  uint64_t keyring_generation() const;
  VolumePolicy policy() const;                   // authenticated (format-1 volumes: their config's)
  std::vector<MasterSlot> master_slots() const;  // authenticated, ordered by number
  uint32_t unlocked_slot() const { return unlocked_slot_; }  // the slot this volume opened with
  std::vector<MasterKeyParams> pending_destroy() const;      // see Keyring::pending_destroy

  // Re-reads the keyring if its file changed since the last load (cheap stat otherwise).
  // Throws (and keeps the current keyring) if the new file does not authenticate or is a step
  // back from the current one (KeyringRegression; also reported to `reporter` as tampering).
  void ReloadKeyringIfChanged(DamageReporter& reporter);
  // False once a changed keyring could not be read with this volume's key (e.g. after a change
  // of master key elsewhere): the active KEK may then be retired by now, so no new file may be
  // wrapped under it until a newer keyring loads.
  bool keyring_current() const;

  // Under the keyring lock: re-reads the keyring, applies `change` (e.g. Rotate or Retire) and
  // saves it as the next generation, crash-safely.
  void UpdateKeyring(const std::function<void(Keyring&)>& change);

  // Replaces the slot this volume was opened with by one for a new master key from
  // `new_source`, as one more keyring generation under the lock (Keyring::ReplaceSlot: the only
  // slot also gets a fresh keyring key). Crash-safe: a single atomic replacement of the keyring
  // file; until it lands only the old key opens the slot, after it only the new one.
  void ChangeMasterKey(const MasterKeySource& new_source);
  // Adds a slot for a new master key from `source`; returns its number.
  uint32_t AddMasterSlot(const MasterKeySource& source);
  // Removes slot `number` (Keyring::RemoveSlot). When the only slot left is this volume's own
  // (unlocked_slot()), the keyring key is renewed too, so that the removed slot's secret, applied
  // to an older copy of the keyring, yields nothing that opens this one; otherwise it stays (the
  // other slots hold it, under master keys this process does not have).
  void RemoveMasterSlot(uint32_t number);
  // For keys retire --destroy-old-master: under the lock, applies `change` (the retirement),
  // records the unlocked slot's master-key parameters as pending destruction and replaces that
  // slot, which must be the only one (Error(kState) otherwise), by a new master key from
  // `new_source`, with a fresh keyring key: one atomic keyring replacement. Returns the
  // parameters now pending destruction.
  std::vector<MasterKeyParams> ReplaceOnlyMasterSlot(const MasterKeySource& new_source,
                                                     const std::function<void(Keyring&)>& change);

 private:
  Volume() = default;
  void DeriveVolumeKeys();
  // Authenticates `file` under `keyring_key` and checks it against this host's state.
  Keyring Authenticate(const KeyringFile& file, const SecureBytes& keyring_key) const;
  // The keyring key that opens `file`: from the slot this volume was opened with (which follows
  // a keyring key renewed elsewhere), else the current keyring key. Caller holds keyring_mutex_.
  SecureBytes KeyringKeyFor(const KeyringFile& file) const;
  // Under the keyring lock: re-reads the keyring, applies `change` and saves the result (the
  // common part of every keyring change).
  void ChangeKeyring(const std::function<void(Keyring&)>& change);
  // Saves `next` as the next generation (under the keyring lock), unless the file changed since
  // it was read with digest `read_digest`.
  void ReplaceKeyring(Keyring& next, const std::string& read_digest);
  std::filesystem::path cipher_dir_;
  UniqueFd root_fd_;
  VolumeConfig config_;
  SecureBytes master_key_;  // the master key of slot unlocked_slot_ (changes under the mutex)
  uint32_t unlocked_slot_ = 0;
  mutable std::shared_mutex keyring_mutex_;
  Keyring keyring_;
  // Identity of the keyring file last loaded: atomic replacement gives it a new inode.
  struct KeyringStamp {
    ino_t ino = 0;
    struct timespec mtime {};
    bool operator==(const KeyringStamp& o) const {
      return ino == o.ino && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
    }
  };
  KeyringStamp KeyringStampNow() const;
  KeyringStamp keyring_stamp_;
  std::string keyring_digest_;   // hex SHA-256 of the keyring file keyring_ came from
  bool keyring_current_ = true;  // see keyring_current()
  SecureBytes name_key_;
  SecureBytes xattr_key_;
  SecureBytes audit_key_;
};

}  // namespace envelopefs
