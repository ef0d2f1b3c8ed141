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
// Names are bytes: every byte string but NUL and '/' is a valid name (UTF-8 or not).
//
// Symlink targets (encrypted mode): format 1 encrypts them like names with a fixed associated
// data label instead of a directory IV (deterministic: equal targets look equal); format 2
// seals each with AES-256-SIV under a fresh random 16-byte nonce, stored as base64url(nonce ||
// SIV output); a target whose stored form would not fit in a symlink is kept in a side file at
// the volume root (long_symlink.h). Extended attribute names are encrypted deterministically (one
// label); xattr values are sealed with AES-256-GCM, bound to the backing attribute name (format 1)
// or to the name and the object's identity (format 2: a regular file's file id, a directory's
// primary IV). A volume reads only its own format's encodings: no downgrade by re-encoding.
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

#include "envelopefs/encoding.h"
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

// What a format-2 xattr value is bound to besides its attribute name: a regular file's file id
// (from its authenticated header) or a directory's primary IV.
inline constexpr size_t kXattrOwnerIdSize = 16;
using XattrOwnerId = std::array<uint8_t, kXattrOwnerIdSize>;

// The IVs of one directory: the primary one (used for new names) and any alternates found in
// sync-conflict copies of the IV file (tried when decrypting and looking up).
struct DirIvs {
  DirIv primary{};
  std::vector<DirIv> alternates;
};

class NameTransform {
 public:
  // `name_key` is 64 bytes (AES-256-SIV), `xattr_key` 32 bytes; `volume_format` is the
  // volume's VolumeConfig::format_version (1, or 2 and later: the format-2 symlink and xattr
  // encodings). Throws std::invalid_argument for a wrong key size or format version 0.
  NameTransform(const SecureBytes& name_key, const SecureBytes& xattr_key, bool plaintext_names,
                uint32_t volume_format);

  bool plaintext_names() const { return plaintext_; }
  uint32_t volume_format() const { return format_; }

  // --- directories -------------------------------------------------------------------------
  // Reads the IV(s) of the open directory `dirfd`. Plaintext mode: returns zeros, no I/O.
  // Throws Error(kAuthentication) if the IV file is missing or malformed, Error(kIo) if an IV
  // file or the directory cannot be opened (out of descriptors, say; a missing or malformed
  // sync-conflict copy is skipped).
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
  // long-name side files, temp files, and the volume files and (encrypted names) long symlink
  // target side files at the root.
  bool IsInternal(std::string_view backing_name, bool in_root) const;
  // Decrypts backing name `backing_name` (reading the side file for long names) with the
  // primary IV, then alternates. std::nullopt if it does not authenticate (a damaged name).
  std::optional<std::string> FromBacking(int dirfd, const DirIvs& ivs,
                                         std::string_view backing_name) const;

  // --- symlink targets ---------------------------------------------------------------------
  // Format 1: deterministic; format 2: a fresh nonce per call. Plaintext mode: identity.
  std::string EncryptSymlink(std::string_view target) const;
  // std::nullopt unless `stored` is this format's encoding of a non-empty target without NUL.
  std::optional<std::string> DecryptSymlink(std::string_view stored) const;
  // True when EncryptSymlink's form of a target of `target_size` bytes fits in a backing
  // symlink (shorter than PATH_MAX); longer targets live in side files (long_symlink.h).
  bool SymlinkFitsInline(size_t target_size) const;
  // A long target's side-file content, V(16) || C = AES-256-SIV(name key, ["envelopefs long
  // symlink v1", id], padded target), and its opening (std::nullopt unless it authenticates
  // for `id` and holds a non-empty target without NUL). Encrypted names only.
  std::vector<uint8_t> SealLongSymlink(std::span<const uint8_t> id, std::string_view target) const;
  std::optional<std::string> OpenLongSymlink(std::span<const uint8_t> id,
                                             std::span<const uint8_t> sealed) const;

  // --- extended attributes -----------------------------------------------------------------
  // Plaintext xattr name (must start with "user.") to the backing name "user.<cipher>";
  // nullopt for other namespaces. In plaintext-names mode names are still encrypted.
  std::optional<std::string> ToBackingXattrName(std::string_view name) const;
  std::optional<std::string> FromBackingXattrName(std::string_view backing) const;
  // True when xattr values are bound to their object (format 2 and later): callers then pass
  // the object's identity as `owner`; format 1 ignores it (the value is bound to its name only).
  bool BindsXattrsToObjects() const;
  // The owner identity of a directory's xattrs: its primary IV; std::nullopt in plaintext-names
  // mode, which has no directory IVs (a directory's values are then bound to their name only).
  std::optional<XattrOwnerId> DirectoryXattrOwner(const DirIvs& ivs) const;
  // value -> nonce(12) || ciphertext || tag(16) under the xattr key. AAD: the backing xattr
  // name (format 1); the backing xattr name || `owner` (format 2; the name alone when `owner`
  // is std::nullopt, which only a directory in plaintext-names mode has).
  std::vector<uint8_t> SealXattrValue(std::string_view backing_name,
                                      const std::optional<XattrOwnerId>& owner,
                                      std::span<const uint8_t> value) const;
  // std::nullopt if `sealed` does not authenticate for this name and owner.
  std::optional<std::vector<uint8_t>> OpenXattrValue(std::string_view backing_name,
                                                     const std::optional<XattrOwnerId>& owner,
                                                     std::span<const uint8_t> sealed) const;

 private:
  std::vector<uint8_t> XattrAad(std::string_view backing_name,
                                const std::optional<XattrOwnerId>& owner) const;

  SecureBytes name_key_;
  SecureBytes xattr_key_;
  bool plaintext_;
  uint32_t format_;
};

}  // namespace envelopefs
