// VolumeConfig — the volume's TOML config, `envelopefs.toml` at the root of the cipher dir.
//
// Holds the volume's identity and parameters in the clear (no secrets): format version, volume
// id, chunk size, names mode, creation time. All of them are bound into the keyring's MAC
// (IdentityBytes), so editing one is detected when the keyring is opened. Since format 2 the
// master-key parameters and the policy (rotation period, audit log on/off) live in the keyring,
// authenticated; a format-1 config still carries them (read as `legacy`) for its format-1
// keyring, until the first keyring change moves them into the keyring. No config value ever
// names a path. A plain value type; not synchronized.
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
// The advisory lock that serialises keyring changes between processes (flock(2)).
inline constexpr char kKeyringLockFileName[] = "envelopefs.keyring.lock";
// The audit log (JSON lines, nothing secret, hash-chained; see audit_log.h).
inline constexpr char kAuditLogFileName[] = "envelopefs.audit.log";

inline constexpr uint32_t kVolumeFormat1 = 1;
inline constexpr uint32_t kVolumeFormat2 = 2;
inline constexpr uint32_t kVolumeFormat = kVolumeFormat2;  // what init writes

using VolumeId = std::array<uint8_t, 16>;

// Where the master key comes from (the keyring's [master_key] source; envelopefs-format(5)).
// kRecovery: a random key shown once as text (recovery_key.h), for a recovery slot.
enum class MasterKeyKind { kKeyFile, kPassphrase, kCommand, kPkcs11, kKmip, kRecovery };

// Argon2id parameters (libsodium crypto_pwhash) for a passphrase-derived master key.
struct KdfParams {
  // Limits are read before anything can be authenticated (the key is derived from them), so
  // bounded by what a volume ever uses: libsodium's "sensitive" limits at most (4 passes,
  // 1 GiB), not whatever an attacker writes to make every unlock take hours or exhaust memory.
  static constexpr uint64_t kMaxOpsLimit = 4;                  // crypto_pwhash_OPSLIMIT_SENSITIVE
  static constexpr uint64_t kMaxMemLimit = uint64_t{1} << 30;  // crypto_pwhash_MEMLIMIT_SENSITIVE
  uint64_t opslimit = 0;
  uint64_t memlimit = 0;
  std::array<uint8_t, 16> salt{};
  bool Bounded() const {
    return opslimit >= 1 && opslimit <= kMaxOpsLimit && memlimit >= 8192 &&
           memlimit <= kMaxMemLimit;
  }
};

// A master key held encrypted by an AES key that never leaves a PKCS#11 token: AES-256-GCM
// (CKM_AES_GCM, 96-bit IV, 128-bit tag) computed by the token, the volume id in the AAD. The
// labels name the token and its key (not secret; the PIN and the module path are not stored).
struct Pkcs11Params {
  static constexpr size_t kMaxLabel = 32;  // a token label's size in CK_TOKEN_INFO
  std::string token_label;
  std::string key_label;  // 1..kMaxLabel bytes too
  // Labels are 1..kMaxLabel printable ASCII characters other than quotes and backslash (they
  // are shown in messages and in suggested command lines).
  static bool IsValidLabel(const std::string& label) { return IsPrintable(label, kMaxLabel); }
  static bool IsPrintable(const std::string& label, size_t max) {
    if (label.empty() || label.size() > max) return false;
    for (char c : label) {
      if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '\'') return false;
    }
    return true;
  }
  std::array<uint8_t, 12> iv{};
  std::array<uint8_t, 48> wrapped{};  // the encrypted 32-byte master key and the 16-byte tag
};

// A master key held encrypted by an AES-256 key that never leaves a KMIP key server: AES-GCM
// (96-bit IV, 128-bit tag) computed by the server's Encrypt, the volume id in the AAD. The key id
// is the server's unique identifier of its key (not secret; the server address and the TLS files
// are given on the command line, not stored).
struct KmipParams {
  static constexpr size_t kMaxKeyId = 64;
  std::string key_id;  // 1..kMaxKeyId printable ASCII characters, no quotes or backslash
  static bool IsValidKeyId(const std::string& id) {
    return Pkcs11Params::IsPrintable(id, kMaxKeyId);
  }
  std::array<uint8_t, 12> iv{};
  std::array<uint8_t, 48> wrapped{};  // the encrypted 32-byte master key and the 16-byte tag
};

// How to obtain the master key: what a MasterKeySource needs before it can produce it.
struct MasterKeyParams {
  MasterKeyKind kind = MasterKeyKind::kKeyFile;
  std::optional<KdfParams> kdf;        // set iff kind == kPassphrase
  std::optional<Pkcs11Params> pkcs11;  // set iff kind == kPkcs11
  std::optional<KmipParams> kmip;      // set iff kind == kKmip
};

// The volume's policy (authenticated in a format-2 keyring).
struct VolumePolicy {
  static constexpr uint32_t kMaxRotateAfterDays = 36500;  // 100 years; at least 1
  uint32_t rotate_after_days = 90;
  bool audit_log = true;
};

// What a format-1 config carried besides the volume's identity.
struct LegacyConfig {
  MasterKeyParams master;
  VolumePolicy policy;  // unauthenticated in format 1
};

struct VolumeConfig {
  uint32_t format_version = kVolumeFormat;
  VolumeId volume_id{};
  uint32_t chunk_size = 0;  // chunk size for new files
  bool plaintext_names = false;
  int64_t created_unix = 0;
  std::optional<LegacyConfig> legacy;  // format 1 only

  // Loads and validates envelopefs.toml below `root_fd` (not following a symlink). Throws
  // Error(kConfig) naming the file on any problem (missing, not TOML, unknown format version,
  // bad values).
  static VolumeConfig LoadAt(int root_fd, const std::filesystem::path& cipher_dir);
  // Writes envelopefs.toml below `root_fd` crash-safely (temp file, fsync, rename, fsync dir).
  void SaveAt(int root_fd, const std::filesystem::path& cipher_dir) const;

  // Canonical bytes of the fields the keyring MAC covers: for a format-2 keyring the volume's
  // identity; for a format-1 keyring (LegacyAuthenticatedBytes) also the legacy master-key
  // parameters, as format 1 defined it.
  std::vector<uint8_t> IdentityBytes() const;
  std::vector<uint8_t> LegacyAuthenticatedBytes() const;
};

// Canonical bytes of master-key parameters and of a policy (for the keyring MAC).
void AppendMasterKeyParams(std::vector<uint8_t>& out, const MasterKeyParams& params);
void AppendPolicy(std::vector<uint8_t>& out, const VolumePolicy& policy);

}  // namespace envelopefs
