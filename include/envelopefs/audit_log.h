// AuditLog — the volume's tamper-evident audit log, `envelopefs.audit.log` in the cipher dir.
//
// One JSON line per key event (volume_created, volume_unlocked, unlock_failed, kek_rotated,
// rewrap_finished, version_retired, master_key_changed, policy_changed, tamper_detected; a KEK
// version is always "kek_version", a file always "file") with the time, the event, the volume id,
// the program, its command (envelopectl), its pid, the user and the host; never anything secret and
// never a plaintext name. Every line carries a sequence number and the SHA-256 of the line before
// it ("prev"), and, when written with the volume's key, an HMAC-SHA256 ("mac", the last field)
// under a key derived from the volume key: one authentic line vouches for every line before it, so
// lines removed, reordered or edited anywhere before the last authenticated line are found by
// Verify(), as CloudTrail's log-file validation finds them. Lines written without the key (a failed
// unlock) are chained but carry no MAC. This host's highest sequence number is kept in HostState,
// so lines cut from the end are found too. Each event also goes to syslog (LOG_AUTHPRIV), the
// host's own log, which the attacker cannot edit.
//
// The log is always that one file in the cipher dir, opened relative to the cipher dir's
// descriptor with O_NOFOLLOW; a symlink, FIFO, device or hard-linked file under its name is
// refused, so nothing read from the cipher dir can direct a write elsewhere. Writers take
// flock(2) on the log, so the daemon and envelopectl never interleave or fork the chain.
// Appending never throws: an audit log that cannot be written must not take the file system
// down (it is logged instead). Thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

// The program name recorded in audit lines ("envelopefs" or "envelopectl").
void SetAuditProgram(const std::string& name);
// The command recorded in audit lines as "command" (e.g. "keys rotate"); empty (the default):
// no such field. Set once, before any line is written.
void SetAuditCommand(const std::string& command);

// Appends `event` with `fields` (a JSON object) to the volume's log (when its policy keeps one)
// with a MAC, and to syslog.
void AppendAuditEvent(const Volume& volume, const std::string& event,
                      nlohmann::json fields = nlohmann::json::object());

// The one writer of tamper_detected: "file" (the cipher path) and "detail", both escaped here
// (EscapeName: names are bytes), and "found_by" when given (e.g. "verify"). Never throws.
void AppendTamperEvent(const Volume& volume, const std::string& file, const std::string& detail,
                       const std::string& found_by = "");

// Volume::Open that records the outcome: volume_unlocked (with `fields`, when `log_unlock`) or,
// for a wrong key, unlock_failed (chained, without a MAC; reason "wrong key", or for a command
// or PKCS#11 source that failed, its one-line message). Throws what Volume::Open throws.
std::unique_ptr<Volume> OpenVolumeAudited(const std::filesystem::path& cipher_dir,
                                          const MasterKeySource& source,
                                          nlohmann::json fields = nlohmann::json::object(),
                                          bool log_unlock = true);

// What Verify() found.
struct AuditLogReport {
  bool present = false;
  uint64_t lines = 0;
  uint64_t legacy = 0;             // lines written before the log was chained (not checked)
  uint64_t authenticated = 0;      // lines whose MAC verified (0 without the key)
  uint64_t unauthenticated = 0;    // chained lines without a MAC (failed unlocks)
  uint64_t trailing_unproven = 0;  // with the key: lines after the last authenticated one
  uint64_t last_sequence = 0;
  bool key_used = false;
  std::vector<std::string> problems;  // one line each; empty: the log is intact
};

// Checks the chain, the sequence numbers, every MAC (with `audit_key`; null: chain only) and the
// end of the log against this host's record. Reads the log without following a symlink.
AuditLogReport VerifyAuditLog(int root_fd, const VolumeConfig& config,
                              const SecureBytes* audit_key);

}  // namespace envelopefs
