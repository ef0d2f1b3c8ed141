// AuditLog — appends one JSON line per key event to the volume's audit log.
//
// The file is named by `audit_log` in the volume config (relative paths are relative to the
// cipher dir; empty: no audit log). Events: volume_unlocked, unlock_failed, kek_rotated,
// rewrap_finished, version_retired, master_key_changed, tamper_detected. Each line carries the
// time (UTC, ISO 8601), the event, the volume id, the program and its pid, plus event fields.
// Never anything secret: no keys, no plaintext names. Each line is written with one O_APPEND
// write(2), so concurrent writers (daemon and envelopectl) never interleave. Thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

// Appends `event` with `fields` (a JSON object). Failures are logged, never thrown: an audit log
// that cannot be written must not take the file system down.
void AppendAuditEvent(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                      const std::string& event, nlohmann::json fields = nlohmann::json::object());

// The program name recorded in audit lines ("envelopefs" or "envelopectl").
void SetAuditProgram(const std::string& name);

// Volume::Open that records the outcome: volume_unlocked (with `fields`) or, for a wrong key,
// unlock_failed. Throws what Volume::Open throws.
std::unique_ptr<Volume> OpenVolumeAudited(const std::filesystem::path& cipher_dir,
                                          const MasterKeySource& source,
                                          nlohmann::json fields = nlohmann::json::object());

}  // namespace envelopefs
