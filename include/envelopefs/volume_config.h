// VolumeConfig — the volume's TOML config, `envelopefs.toml` at the root of the cipher dir.
//
// Holds the volume's parameters in the clear (no secrets). The security-relevant fields (see
// AuthenticatedBytes) are bound into the keyring's MAC, so editing them is detected when the
// keyring is opened; policy fields (rotation period, audit log path) are freely editable.
// A plain value type; not synchronized.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace envelopefs {

inline constexpr char kConfigFileName[] = "envelopefs.toml";
inline constexpr char kKeyringFileName[] = "envelopefs.keyring";
// The keyring under a new master key, staged by change-master until the config names that key.
inline constexpr char kKeyringNewFileName[] = "envelopefs.keyring.new";
// The audit log a new volume gets (JSON lines, nothing secret; see audit_log.h).
inline constexpr char kDefaultAuditLogName[] = "envelopefs.audit.log";

enum class MasterKeyKind { kKeyFile, kPassphrase };

// Argon2id parameters (libsodium crypto_pwhash) for a passphrase-derived master key.
struct KdfParams {
  uint64_t opslimit = 0;
  uint64_t memlimit = 0;
  std::array<uint8_t, 16> salt{};
};

struct VolumeConfig {
  uint32_t format_version = 1;
  std::array<uint8_t, 16> volume_id{};
  uint32_t chunk_size = 0;  // default chunk size for new files
  bool plaintext_names = false;
  MasterKeyKind master_key_kind = MasterKeyKind::kKeyFile;
  std::optional<KdfParams> kdf;  // set iff master_key_kind == kPassphrase
  int64_t created_unix = 0;
  // Policy (not authenticated).
  uint32_t rotate_after_days = 90;
  std::string audit_log;  // empty: none; relative paths are relative to the cipher dir
                          // (new volumes: kDefaultAuditLogName)

  // Loads and validates `dir/envelopefs.toml`. Throws Error(kConfig) naming the file on any
  // problem (missing, not TOML, unknown format version, bad values).
  static VolumeConfig Load(const std::filesystem::path& cipher_dir);
  // Writes `dir/envelopefs.toml` crash-safely (temp file, fsync, rename, fsync dir).
  void Save(const std::filesystem::path& cipher_dir) const;

  // Canonical byte string of the authenticated fields, for the keyring MAC.
  std::vector<uint8_t> AuthenticatedBytes() const;
};

}  // namespace envelopefs
