// Opening paths inside the cipher dir without ever leaving it — see beneath.h.
#include "envelopefs/beneath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

bool ValidComponent(std::string_view c) { return !c.empty() && c != "." && c != ".."; }

}  // namespace

int OpenParentBeneath(int root_fd, std::string_view relative, std::string_view* leaf) {
  if (relative.empty() || relative.front() == '/') return -EINVAL;
  UniqueFd dir(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) return -errno;
  for (;;) {
    size_t slash = relative.find('/');
    std::string_view component = relative.substr(0, slash);
    if (!ValidComponent(component)) return -EINVAL;
    if (slash == std::string_view::npos) {
      *leaf = component;
      return dir.release();
    }
    std::string name(component);
    int next = ::openat(dir.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return errno == ENOTDIR ? -ELOOP : -errno;  // a symlink is not a directory
    dir.reset(next);
    relative.remove_prefix(slash + 1);
  }
}

int OpenBeneath(int root_fd, std::string_view relative, int flags, mode_t mode) {
  std::string_view leaf;
  int parent = OpenParentBeneath(root_fd, relative, &leaf);
  if (parent < 0) return parent;
  UniqueFd owned(parent);
  std::string name(leaf);
  int fd = ::openat(parent, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  return fd >= 0 ? fd : -errno;
}

int OpenRegularFileAt(int dirfd, const std::string& name, int flags, bool create, mode_t mode,
                      bool single_link) {
  flags &= ~(O_CREAT | O_EXCL | O_TRUNC);
  for (int attempt = 0; attempt < 8; ++attempt) {
    UniqueFd path(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!path.valid()) {
      if (errno != ENOENT || !create) return -errno;
      int fd =
          ::openat(dirfd, name.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd >= 0) return fd;
      if (errno != EEXIST) return -errno;
      continue;  // created by someone else meanwhile: check what it is
    }
    struct stat st;
    if (::fstat(path.get(), &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EINVAL;
    if (single_link && st.st_nlink != 1) return -EMLINK;
    // The magic link of an O_PATH fd reopens exactly this inode (a regular file: nothing to
    // follow), whatever the name points to by now.
    int fd = ::open(ProcFdPath(path.get()).c_str(), flags | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
  }
  return -EAGAIN;
}

int OpenRegularBeneath(int root_fd, std::string_view relative, int flags) {
  std::string_view leaf;
  int parent = OpenParentBeneath(root_fd, relative, &leaf);
  if (parent < 0) return parent;
  UniqueFd owned(parent);
  return OpenRegularFileAt(parent, std::string(leaf), flags);
}

std::string FdPath(int fd, const std::string& fallback) {
  char path[4096];
  ssize_t n = ::readlink(ProcFdPath(fd).c_str(), path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : fallback;
}

}  // namespace envelopefs
