// HostState — what this host remembers about each volume it has opened, kept outside the cipher
// dir where the attacker who writes the cipher dir cannot reach it: the newest keyring it has
// seen (generation, digest, highest KEK version, retired versions) and the last audit-log line
// it wrote (sequence number and SHA-256).
//
// A keyring that is a step back from the newest this host has seen (KeyringRegression: an old
// copy restored into the cipher dir, bringing back retired KEKs) is refused; an audit log that
// no longer holds the last line this host wrote, as this host wrote it, has lost lines. The
// directory is $ENVELOPEFS_STATE_DIR, else /var/lib/envelopefs for root, else
// $XDG_STATE_HOME/envelopefs or ~/.local/state/envelopefs; one small file per volume id, changed
// under flock(2) and replaced atomically. A host that cannot keep state (no writable directory)
// warns once and remembers nothing. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "envelopefs/keyring.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

class HostState {
 public:
  explicit HostState(const VolumeId& volume_id);

  static std::filesystem::path Directory();
  std::filesystem::path file() const;

  // Remembers `keyring` if it is the newest seen; throws Error(kConfig) naming `display` (and
  // saying how to accept it deliberately) if it is a step back from what this host has seen.
  void CheckKeyring(const KeyringFacts& keyring, const std::string& display);

  // The last audit-log line this host wrote: its sequence number and hex SHA-256.
  struct AuditMark {
    uint64_t sequence = 0;
    std::string sha256;
  };
  AuditMark audit_mark() const;
  void RecordAuditLine(uint64_t sequence, const std::string& sha256);  // keeps the highest

 private:
  struct Values {
    KeyringFacts keyring;
    AuditMark audit;
    bool operator==(const Values& o) const;
  };
  Values Read() const;
  // Applies `change` to the stored values under the file's lock (fsynced when `durable`); false
  // if there is no state.
  template <typename F>
  bool Update(F&& change, bool durable);

  std::string volume_hex_;
};

}  // namespace envelopefs
