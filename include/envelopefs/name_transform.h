// NameTransform — maps plaintext names to backing (cipher dir) names and back.
//
// Encrypted mode (the default): a name is padded (PKCS#7 to a multiple of 16 bytes), encrypted
// with AES-256-SIV (OpenSSL 3, deterministic AEAD) under the volume name key with the
// directory's IV as associated data, and encoded as unpadded base64url. base64url has no '.',
// so every internal file name contains a '.' and can never collide with an encrypted name.
// A backing name longer than 255 bytes is stored as "envelopefs.long.<base64url(SHA-256(full
// cipher name))>" plus a side file of the same name with suffix ".name" holding the full cipher
// name. Each directory has a random 16-byte IV in the file "envelopefs.diriv", created before
// the directory becomes visible (MakeDirectory), so a crash never leaves a directory without its
// IV. Sync-conflict copies of the IV file ("envelopefs*.diriv*") are honoured as alternates, so
// entries created on another replica stay readable (gocryptfs#151).
//
// Plaintext mode (--plaintext-names): names are stored as they are; only the volume files at the
// root and the ".envelopefs." prefix are reserved.
//
// Symlink targets are encrypted the same way with a fixed associated data label instead of a
// directory IV. Extended attribute names likewise; xattr values are sealed with AES-256-GCM.
//
// Thread-safe: immutable after construction.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "envelopefs/secure_bytes.h"

namespace envelopefs {

inline constexpr char kDirIvFileName[] = "envelopefs.diriv";
inline constexpr char kLongNamePrefix[] = "envelopefs.long.";
inline constexpr char kLongNameSuffix[] = ".name";
inline constexpr char kTempPrefix[] = ".envelopefs.tmp.";
inline constexpr size_t kDirIvSize = 16;
inline constexpr size_t kMaxBackingNameLength = 255;
inline constexpr size_t kMaxNameLength = 255;  // plaintext name limit, as on ext4

using DirIv = std::array<uint8_t, kDirIvSize>;

// The IVs of one directory: the primary one (used for new names) and any alternates found in
// sync-conflict copies of the IV file (tried when decrypting and looking up).
struct DirIvs {
  DirIv primary{};
  std::vector<DirIv> alternates;
};

class NameTransform {
 public:
  // `name_key` is 64 bytes (AES-256-SIV), or empty for plaintext names; `xattr_key` 32 bytes.
  NameTransform(const SecureBytes& name_key, const SecureBytes& xattr_key, bool plaintext_names);

  bool plaintext_names() const { return plaintext_; }

  // --- directories -------------------------------------------------------------------------
  // Reads the IV(s) of the open directory `dirfd`. Plaintext mode: returns zeros, no I/O.
  // Throws Error(kAuthentication) if the IV file is missing or malformed.
  DirIvs ReadDirIvs(int dirfd) const;
  // Writes a fresh random IV file into the (new, empty) directory `dirfd` and fsyncs it.
  void InitDirIv(int dirfd) const;
  // mkdir that is atomic with respect to the IV: creates a temp dir in `parent_fd`, writes its
  // IV, then renames it to `backing_name` with RENAME_NOREPLACE (EEXIST if taken). Returns 0 or
  // -errno. Plaintext mode: plain mkdirat.
  int MakeDirectory(int parent_fd, const std::string& backing_name, mode_t mode) const;

  // --- entry names -------------------------------------------------------------------------
  // The backing name for plaintext `name` under IV `iv` (long names already hashed). Returns
  // std::nullopt if `name` is not allowed (too long, reserved in plaintext mode, "." or "..").
  std::optional<std::string> ToBacking(const DirIv& iv, std::string_view name, bool in_root) const;
  // True when `backing_name` is the hashed form that needs a ".name" side file.
  static bool IsLongName(std::string_view backing_name);
  // For a new entry with a long name: writes the side file (crash-safely). Call before
  // creating the entry. `iv`/`name` as for ToBacking.
  int WriteLongNameSideFile(int dirfd, const DirIv& iv, std::string_view name,
                            std::string_view backing_name) const;
  // Removes the side file of a long backing name (no-op for short names); returns 0 or -errno.
  int RemoveLongNameSideFile(int dirfd, std::string_view backing_name) const;
  // True for backing entries that are not user entries: the IV file and its conflict copies,
  // long-name side files, temp files, and the volume files at the root.
  bool IsInternal(std::string_view backing_name, bool in_root) const;
  // Decrypts backing name `backing_name` (reading the side file for long names) with the
  // primary IV, then alternates. std::nullopt if it does not authenticate (a damaged name).
  std::optional<std::string> FromBacking(int dirfd, const DirIvs& ivs,
                                         std::string_view backing_name) const;

  // --- symlink targets ---------------------------------------------------------------------
  std::string EncryptSymlink(std::string_view target) const;  // plaintext mode: identity
  std::optional<std::string> DecryptSymlink(std::string_view stored) const;

  // --- extended attributes -----------------------------------------------------------------
  // Plaintext xattr name (must start with "user.") to the backing name "user.<cipher>";
  // nullopt for other namespaces. In plaintext-names mode names are still encrypted.
  std::optional<std::string> ToBackingXattrName(std::string_view name) const;
  std::optional<std::string> FromBackingXattrName(std::string_view backing) const;
  // value -> nonce(12) || ciphertext || tag(16), AAD = backing xattr name.
  std::vector<uint8_t> SealXattrValue(std::string_view backing_name,
                                      std::span<const uint8_t> value) const;
  std::optional<std::vector<uint8_t>> OpenXattrValue(std::string_view backing_name,
                                                     std::span<const uint8_t> sealed) const;

 private:
  SecureBytes name_key_;
  SecureBytes xattr_key_;
  bool plaintext_;
};

}  // namespace envelopefs
