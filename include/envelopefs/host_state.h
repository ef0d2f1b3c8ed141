// HostState — what this host remembers about each volume it has opened, kept outside the cipher
// dir where the attacker who writes the cipher dir cannot reach it: the highest keyring
// generation and the highest audit-log sequence number seen.
//
// A keyring older than one this host has already seen is a rollback (an old copy restored into
// the cipher dir, bringing back retired KEKs) and is refused; an audit log that ends before the
// last line this host wrote has lost lines. The directory is $ENVELOPEFS_STATE_DIR, else
// /var/lib/envelopefs for root, else $XDG_STATE_HOME/envelopefs or ~/.local/state/envelopefs;
// one small file per volume id, changed under flock(2) and replaced atomically. A host that
// cannot keep state (no writable directory) warns once and remembers nothing. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "envelopefs/volume_config.h"

namespace envelopefs {

class HostState {
 public:
  explicit HostState(const VolumeId& volume_id);

  static std::filesystem::path Directory();
  std::filesystem::path file() const;

  // Remembers `generation` if it is the highest seen; throws Error(kConfig) naming `keyring`
  // (and saying how to accept it deliberately) if this host has seen a higher one.
  void CheckKeyringGeneration(uint64_t generation, const std::string& keyring);
  uint64_t keyring_generation() const;

  uint64_t audit_sequence() const;
  void RecordAuditSequence(uint64_t sequence);  // keeps the maximum

 private:
  struct Values {
    uint64_t keyring_generation = 0;
    uint64_t audit_sequence = 0;
  };
  Values Read() const;
  // Applies `change` to the stored values under the file's lock (fsynced when `durable`); false
  // if there is no state.
  template <typename F>
  bool Update(F&& change, bool durable);

  std::string volume_hex_;
};

}  // namespace envelopefs
