// Symlink targets too long for a backing symlink (encrypted names only; envelopefs-format(5),
// "Long symbolic link targets").
//
// A target whose encrypted form (NameTransform::EncryptSymlink) would not fit in a symlink
// (4096 bytes with its NUL) is stored in a side file at the volume root named
// "envelopefs.symlink.<base64url(id)>", id 16 random bytes, and the backing object stays a
// symlink whose target is that name (the marker). The side file holds V || C = AES-256-SIV(name
// key, ["envelopefs long symlink v1", id], padded target), so it opens only under its own id.
// Rename and link need nothing (every link of the symlink names the same side file); the side
// file goes when the symlink's last link goes (BackingSymlinkDrop). Shorter targets are stored
// as before.
//
// Every read is bounded, by name beneath the root fd with O_NOFOLLOW, of a regular file only;
// whatever the cipher dir holds, a read either yields the target or says what is wrong.
// Thread-safe: no shared state (each call works on its own descriptors).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

inline constexpr char kLongSymlinkPrefix[] = "envelopefs.symlink.";
// The longest target a symlink may have, as on ext4 (PATH_MAX - 1).
inline constexpr size_t kMaxSymlinkTargetLength = 4095;

// True when `stored` (a backing symlink's target) is a well-formed long-target marker.
bool IsLongSymlinkMarker(std::string_view stored);

// Creates the backing symlink `backing` in `dirfd` for the plaintext `target`: inline when its
// encoding fits, else the side file in `root_fd` first (durably), then the marker symlink.
// 0 or -errno (-ENAMETOOLONG above kMaxSymlinkTargetLength bytes, -EINVAL for an empty target).
int CreateBackingSymlink(const NameTransform& names, int root_fd, int dirfd,
                         const std::string& backing, std::string_view target);

// The stored target of the symlink `name` in `dirfd` ("" with an O_PATH fd of the symlink
// itself), or std::nullopt (errno set).
std::optional<std::string> ReadStoredTarget(int dirfd, const std::string& name);

// The plaintext target of a backing symlink whose stored target is `stored`, reading its side
// file from `root_fd` when it is a marker. std::nullopt with `*problem` set to one line (no
// file name) when it is damaged: e.g. "symlink target does not authenticate", "long symlink
// target: side file envelopefs.symlink.X missing".
std::optional<std::string> ReadBackingSymlink(const NameTransform& names, int root_fd,
                                              std::string_view stored, std::string* problem);

// Removes the side file of a long target once the symlink's last link is gone. Construct it
// before unlinking or replacing the backing entry `name` in `dirfd`, call Finish() after: if
// the entry was a long-target symlink and now has no link left, its side file is removed (a
// crash in between leaves an unreferenced side file, which nothing reads). Not thread-safe
// (one per operation).
class BackingSymlinkDrop {
 public:
  BackingSymlinkDrop(const NameTransform& names, int root_fd, int dirfd, const std::string& name);
  void Finish();

 private:
  int root_fd_;
  UniqueFd link_;  // O_PATH of the symlink when it is a long-target one
  std::string marker_;
};

}  // namespace envelopefs
