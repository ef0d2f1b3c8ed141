#include "backing_entries.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "envelopefs/cipher_header.h"
#include "envelopefs/long_symlink.h"
#include "file_times.h"
#include "request_context.h"

namespace envelopefs {

int GetDirIvs(EnvelopeFs& fs, Inode& dir, DirIvs* ivs) {
  {
    std::lock_guard<std::mutex> lock(dir.mutex);
    if (dir.dir_ivs) {
      *ivs = *dir.dir_ivs;
      return 0;
    }
  }
  InodeFd fd;
  if (int rc = fs.inodes().Use(dir, &fd)) return rc;
  // (Opens the IV files and the directory: retried on EMFILE, see emfile_retry.h.)
  DirIvs read = CallRetryingOnEmfile([&] { return fs.names().ReadDirIvs(fd.get()); });
  std::lock_guard<std::mutex> lock(dir.mutex);
  if (!dir.dir_ivs) dir.dir_ivs = std::move(read);
  *ivs = *dir.dir_ivs;
  return 0;
}

namespace {

// The chunk layout of the closed regular file `inode`, from its header (cached).
// (Reopening through /proc/self/fd is safe for a regular file: the magic link resolves to the
// very inode, and there is no symlink behind it to follow.)
std::optional<ChunkLayout> LayoutOf(Inode& inode, int path_fd) {
  {
    std::lock_guard<std::mutex> lock(inode.mutex);
    if (inode.layout) return inode.layout;
  }
  UniqueFd fd(OpenRetryingOnEmfile(
      [&] { return open(ProcFdPath(path_fd).c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd.valid()) return std::nullopt;
  std::optional<ChunkLayout> layout = HeaderLayout(fd.get());
  if (!layout) return std::nullopt;  // opening the file will say why
  std::lock_guard<std::mutex> lock(inode.mutex);
  inode.layout = layout;
  return layout;
}

}  // namespace

void ToPlainAttr(EnvelopeFs& fs, Inode* inode, int fd, struct stat& st) {
  if (S_ISREG(st.st_mode)) {
    std::shared_ptr<CipherFile> open;
    if (inode != nullptr) {
      std::lock_guard<std::mutex> lock(inode->mutex);
      open = inode->open_file.lock();
    }
    ShowCtime(inode, fd, st);
    if (open) {
      st.st_size = static_cast<off_t>(open->size());
      return;
    }
    // Closed: the core tells the size from the cipher file's length, reading the header (once
    // per inode, cached) only for a file large enough to need it.
    st.st_size = static_cast<off_t>(
        ClosedFilePlainSize(static_cast<uint64_t>(st.st_size), fs.volume().config().chunk_size,
                            [inode, fd]() -> std::optional<ChunkLayout> {
                              return inode != nullptr ? LayoutOf(*inode, fd) : std::nullopt;
                            }));
  } else if (S_ISLNK(st.st_mode)) {
    if (auto stored = ReadStoredTarget(fd, "")) {
      std::string problem;  // readlink reports it
      auto target = ReadBackingSymlink(fs.names(), fs.volume().root_fd(), *stored, &problem);
      st.st_size = target ? static_cast<off_t>(target->size()) : 0;
    }
  }
}

int GetAttr(EnvelopeFs& fs, Inode& inode, struct stat* st) {
  InodeFd fd;
  if (int rc = fs.inodes().Use(inode, &fd)) return rc;
  if (int err = StatFd(fd.get(), st)) return err;
  ToPlainAttr(fs, &inode, fd.get(), *st);
  return 0;
}

int FindBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing) {
  DirIvs ivs;
  if (int rc = GetDirIvs(fs, dir, &ivs)) return rc;
  auto primary = fs.names().ToBacking(ivs.primary, name, dir.is_root);
  if (!primary) return std::strlen(name) > kMaxNameLength ? ENAMETOOLONG : ENOENT;
  InodeFd dir_fd;
  if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
  struct stat st;
  if (fstatat(dir_fd.get(), primary->c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
    *backing = *primary;
    return 0;
  }
  for (const DirIv& iv : ivs.alternates) {
    auto alt = fs.names().ToBacking(iv, name, dir.is_root);
    if (alt && fstatat(dir_fd.get(), alt->c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      *backing = *alt;
      return 0;
    }
  }
  *backing = *primary;
  return ENOENT;
}

int NewBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing) {
  DirIvs ivs;
  if (int rc = GetDirIvs(fs, dir, &ivs)) return rc;
  auto b = fs.names().ToBacking(ivs.primary, name, dir.is_root);
  if (!b) {
    size_t len = std::strlen(name);
    return len > kMaxNameLength ? ENAMETOOLONG : EPERM;  // reserved name
  }
  *backing = *b;
  if (NameTransform::IsLongName(*backing)) {
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    if (int rc =
            ErrnoOf(fs.names().WriteLongNameSideFile(dir_fd.get(), ivs.primary, name, *backing))) {
      return rc;
    }
  }
  return 0;
}

int LookupBacking(EnvelopeFs& fs, Inode& dir, const std::string& backing, std::string_view name,
                  fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  InodeFd dir_fd;
  if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
  int fd = OpenRetryingOnEmfile(
      [&] { return openat(dir_fd.get(), backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC); });
  if (fd < 0) return errno;
  UniqueFd owned(fd);
  struct stat st;
  if (int err = StatFd(fd, &st)) return err;
  InodeFd inode_fd;
  Inode* inode = fs.inodes().FindOrInsert(std::move(owned), st.st_dev, st.st_ino,
                                          st.st_mode & S_IFMT, &inode_fd);
  if (S_ISREG(st.st_mode)) {
    // An Inode made anew for a file still alive in the daemon gets its CipherFile back.
    std::lock_guard<std::mutex> lock(inode->open_mutex);
    if (inode->open_file.expired()) {
      if (auto live = fs.live_files().Find(inode_fd, st.st_dev, st.st_ino)) {
        std::lock_guard<std::mutex> ilock(inode->mutex);
        inode->open_file = live;
      }
    }
  }
  ToPlainAttr(fs, inode, inode_fd.get(), st);
  {
    std::lock_guard<std::mutex> lock(inode->mutex);  // where the kernel last saw it
    inode->parent_is_root = dir.is_root;
    inode->parent_key = {dir.dev, dir.ino};
    inode->name.assign(name);
  }
  e->ino = reinterpret_cast<fuse_ino_t>(inode);
  e->attr = st;
  e->attr_timeout = fs.options().attr_timeout;
  e->entry_timeout = fs.options().entry_timeout;
  return 0;
}

namespace {

// The group a new entry of `dir` gets for the caller of `req` (the directory's with setgid).
gid_t NewEntryGroup(fuse_req_t req, Inode& dir) {
  struct stat parent;
  InodeFd dir_fd;
  if (Fs(req).inodes().Use(dir, &dir_fd) == 0 && StatFd(dir_fd.get(), &parent) == 0 &&
      (parent.st_mode & S_ISGID)) {
    return parent.st_gid;
  }
  return fuse_req_ctx(req)->gid;
}

}  // namespace

void ChownToCaller(fuse_req_t req, Inode& dir, const std::string& backing) {
  if (geteuid() != 0) return;
  InodeFd dir_fd;
  int rc = Fs(req).inodes().Use(dir, &dir_fd);
  if (rc == 0 && fchownat(dir_fd.get(), backing.c_str(), fuse_req_ctx(req)->uid,
                          NewEntryGroup(req, dir), AT_SYMLINK_NOFOLLOW) != 0) {
    rc = errno;
  }
  if (rc != 0) {
    Log(LogLevel::kWarning, std::string("chown of a new entry failed: ") + std::strerror(rc));
  }
}

void ChownFdToCaller(fuse_req_t req, Inode& dir, int fd) {
  if (geteuid() != 0) return;
  if (fchown(fd, fuse_req_ctx(req)->uid, NewEntryGroup(req, dir)) != 0) {
    Log(LogLevel::kWarning, std::string("chown of a new file failed: ") + std::strerror(errno));
  }
}

}  // namespace envelopefs
