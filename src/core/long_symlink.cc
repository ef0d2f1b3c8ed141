// Long symlink targets in side files at the volume root (see long_symlink.h and
// envelopefs-format(5)).
#include "envelopefs/long_symlink.h"

#include <fcntl.h>
#include <linux/limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "atomic_file.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {
namespace {

constexpr size_t kIdSize = 16;
constexpr size_t kIdTextSize = 22;  // unpadded base64url of 16 bytes
// V(16) || C(padded target): at most 16 + 4096 bytes.
constexpr size_t kMaxSideFileSize = 16 + kMaxSymlinkTargetLength + 1;

// The id a marker names, if it is well formed (canonical base64url of exactly 16 bytes).
std::optional<std::vector<uint8_t>> MarkerId(std::string_view stored) {
  const std::string_view prefix = kLongSymlinkPrefix;
  if (stored.size() != prefix.size() + kIdTextSize || stored.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  std::string_view text = stored.substr(prefix.size());
  auto id = FromBase64Url(text);
  if (!id || id->size() != kIdSize || ToBase64Url(*id) != text) return std::nullopt;
  return id;
}

}  // namespace

bool IsLongSymlinkMarker(std::string_view stored) { return MarkerId(stored).has_value(); }

int CreateBackingSymlink(const NameTransform& names, int root_fd, int dirfd,
                         const std::string& backing, std::string_view target) {
  if (target.empty()) return -EINVAL;
  if (target.size() > kMaxSymlinkTargetLength) return -ENAMETOOLONG;
  try {
    if (names.plaintext_names() || names.SymlinkFitsInline(target.size())) {
      std::string stored = names.EncryptSymlink(target);
      if (stored.size() >= PATH_MAX) return -ENAMETOOLONG;
      return ::symlinkat(stored.c_str(), dirfd, backing.c_str()) == 0 ? 0 : -errno;
    }
    std::array<uint8_t, kIdSize> id;
    RandomBytes(id);
    const std::string marker = kLongSymlinkPrefix + ToBase64Url(id);
    std::vector<uint8_t> sealed = names.SealLongSymlink(id, target);
    if (int rc = WriteFileAtomicallyAt(root_fd, marker, sealed, 0444, /*no_replace=*/true)) {
      return rc;
    }
    if (::symlinkat(marker.c_str(), dirfd, backing.c_str()) != 0) {
      int rc = -errno;
      ::unlinkat(root_fd, marker.c_str(), 0);
      return rc;
    }
    return 0;
  } catch (const Error&) {
    return -EIO;
  }
}

std::optional<std::string> ReadStoredTarget(int dirfd, const std::string& name) {
  std::string stored(PATH_MAX, '\0');
  ssize_t n = ::readlinkat(dirfd, name.c_str(), stored.data(), stored.size());
  if (n < 0) return std::nullopt;
  stored.resize(static_cast<size_t>(n));
  return stored;
}

std::optional<std::string> ReadBackingSymlink(const NameTransform& names, int root_fd,
                                              std::string_view stored, std::string* problem) {
  auto id = names.plaintext_names() ? std::nullopt : MarkerId(stored);
  if (!id) {
    auto target = names.DecryptSymlink(stored);
    if (!target) *problem = "symlink target does not authenticate";
    return target;
  }
  const std::string side(stored);
  const std::string what = "long symlink target: side file " + side;
  int fd = ::openat(root_fd, side.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *problem = what + (errno == ENOENT ? " missing" : " cannot be opened");
    return std::nullopt;
  }
  UniqueFd owned(fd);
  auto sealed = ReadSmallFileAt(fd, kMaxSideFileSize);
  if (!sealed) {
    *problem = what + " is not a regular file of at most 4112 bytes";
    return std::nullopt;
  }
  std::optional<std::string> target;
  try {
    target = names.OpenLongSymlink(*id, *sealed);
  } catch (const Error&) {
  }
  // Only the canonical form: a target that fits inline is never stored in a side file.
  if (!target || target->size() > kMaxSymlinkTargetLength ||
      names.SymlinkFitsInline(target->size())) {
    *problem = what + " does not authenticate";
    return std::nullopt;
  }
  return target;
}

BackingSymlinkDrop::BackingSymlinkDrop(const NameTransform& names, int root_fd, int dirfd,
                                       const std::string& name)
    : root_fd_(root_fd) {
  if (names.plaintext_names()) return;
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(st.st_mode)) {
    return;
  }
  UniqueFd fd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return;
  auto stored = ReadStoredTarget(fd.get(), "");
  if (!stored || !IsLongSymlinkMarker(*stored)) return;
  link_ = std::move(fd);
  marker_ = std::move(*stored);
}

void BackingSymlinkDrop::Finish() {
  if (!link_.valid()) return;
  struct stat st;
  if (::fstat(link_.get(), &st) == 0 && S_ISLNK(st.st_mode) && st.st_nlink == 0) {
    ::unlinkat(root_fd_, marker_.c_str(), 0);
  }
  link_ = UniqueFd();
}

}  // namespace envelopefs
