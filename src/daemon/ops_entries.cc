// FUSE operations on directory entries: lookup, forget, create (mknod, mkdir, symlink,
// link), remove (unlink, rmdir), rename and readlink.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "backing_entries.h"
#include "envelopefs/long_symlink.h"
#include "open_files.h"
#include "operations.h"
#include "request_context.h"

namespace envelopefs {
namespace {

void ReplyNewEntry(fuse_req_t req, Inode& dir, const std::string& backing, const char* name,
                   int err) {
  fuse_entry_param e;
  if (!err) err = Guard("lookup", [&] { return LookupBacking(Fs(req), dir, backing, name, &e); });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

// True if the backing directory `fd` holds nothing but internal files.
int CheckEmpty(EnvelopeFs& fs, int dirfd, std::vector<std::string>* internal) {
  int fd =
      OpenRetryingOnEmfile([&] { return openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return errno;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return errno;
  }
  int result = 0;
  while (dirent* ent = readdir(d)) {
    std::string_view n = ent->d_name;
    if (n == "." || n == "..") continue;
    if (!fs.names().IsInternal(n, false)) {
      result = ENOTEMPTY;
      break;
    }
    internal->emplace_back(n);
  }
  closedir(d);
  return result;
}

// Removes the internal files of an (otherwise empty) backing directory so it can be removed.
int ClearInternal(int parent_fd, const std::string& backing, EnvelopeFs& fs) {
  int dirfd = OpenRetryingOnEmfile([&] {
    return openat(parent_fd, backing.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  });
  if (dirfd < 0) return errno;
  UniqueFd owned(dirfd);
  std::vector<std::string> internal;
  if (int rc = CheckEmpty(fs, dirfd, &internal)) return rc;
  for (const std::string& n : internal) {
    if (unlinkat(dirfd, n.c_str(), 0) != 0 && errno == EISDIR) {
      unlinkat(dirfd, n.c_str(), AT_REMOVEDIR);
    }
  }
  return 0;
}

}  // namespace

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  fuse_entry_param e;
  int err = Guard("lookup", [&] {
    std::string backing;
    if (int rc = FindBacking(fs, GetInode(req, parent), name, &backing)) return rc;
    return LookupBacking(fs, GetInode(req, parent), backing, name, &e);
  });
  if (err == ENOENT) {
    std::memset(&e, 0, sizeof e);  // a negative entry, cached like a positive one
    e.entry_timeout = fs.options().entry_timeout;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  if (ino != FUSE_ROOT_ID) Fs(req).inodes().Forget(&GetInode(req, ino), nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) {
    if (forgets[i].ino != FUSE_ROOT_ID) {
      Fs(req).inodes().Forget(&GetInode(req, forgets[i].ino), forgets[i].nlookup);
    }
  }
  fuse_reply_none(req);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  EnvelopeFs& fs = Fs(req);
  std::string target;
  int err = Guard("readlink", [&] {
    InodeFd fd;
    if (int rc = fs.inodes().Use(GetInode(req, ino), &fd)) return rc;
    auto stored = ReadStoredTarget(fd.get(), "");
    if (!stored) return errno;
    std::string problem;
    auto plain = ReadBackingSymlink(fs.names(), fs.volume().root_fd(), *stored, &problem);
    if (!plain) {
      ReportDamage(fs.damage_reporter(),
                   {FdPath(fd.get(), "(unknown)"), std::nullopt, problem + " (EIO)"});
      return EIO;
    }
    target = std::move(*plain);
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_readlink(req, target.c_str());
  }
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  std::string backing;
  int err = Guard("mknod", [&]() -> int {
    std::shared_lock lock(fs.namespace_mutex());
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    if (S_ISREG(mode)) {
      std::shared_ptr<CipherFile> file;
      if (int rc = CreateRegular(req, dir, backing, mode, true, &file)) return rc;
      return 0;
    }
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    if (mknodat(dir_fd.get(), backing.c_str(), mode, rdev) != 0) return errno;
    ChownToCaller(req, dir, backing);
    return 0;
  });
  ReplyNewEntry(req, dir, backing, name, err);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  std::string backing;
  int err = Guard("mkdir", [&]() -> int {
    std::shared_lock lock(fs.namespace_mutex());
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    if (int rc = ErrnoOf(fs.names().MakeDirectory(dir_fd.get(), backing, mode & 07777))) {
      return rc;
    }
    ChownToCaller(req, dir, backing);
    return 0;
  });
  ReplyNewEntry(req, dir, backing, name, err);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  std::string backing;
  int err = Guard("symlink", [&]() -> int {
    std::shared_lock lock(fs.namespace_mutex());
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    if (int rc = ErrnoOf(
            CreateBackingSymlink(fs.names(), fs.volume().root_fd(), dir_fd.get(), backing, link))) {
      return rc;
    }
    ChownToCaller(req, dir, backing);
    return 0;
  });
  ReplyNewEntry(req, dir, backing, name, err);
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  std::string backing;
  int err = Guard("link", [&]() -> int {
    std::shared_lock lock(fs.namespace_mutex());
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    InodeFd fd, dir_fd;
    if (int rc = fs.inodes().Use(GetInode(req, ino), &fd)) return rc;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    std::string path = ProcFdPath(fd.get());
    if (linkat(AT_FDCWD, path.c_str(), dir_fd.get(), backing.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      return errno;
    }
    return 0;
  });
  ReplyNewEntry(req, dir, backing, name, err);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  // The last reference to the backing file, if we hold it, is dropped only after the reply:
  // freeing the file's blocks is not the caller's wait. (With file handles the daemon keeps no
  // descriptor of an idle file, so the unlink itself would free them.)
  UniqueFd last_ref;
  int err = Guard("unlink", [&]() -> int {
    std::shared_lock lock(fs.namespace_mutex());
    std::string backing;
    if (int rc = FindBacking(fs, dir, name, &backing)) return rc;
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    last_ref.reset(openat(dir_fd.get(), backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    BackingSymlinkDrop drop(fs.names(), fs.volume().root_fd(), dir_fd.get(), backing);
    if (unlinkat(dir_fd.get(), backing.c_str(), 0) != 0) return errno;
    drop.Finish();
    fs.names().RemoveLongNameSideFile(dir_fd.get(), backing);
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  int err = Guard("rmdir", [&]() -> int {
    std::unique_lock lock(fs.namespace_mutex());
    std::string backing;
    if (int rc = FindBacking(fs, dir, name, &backing)) return rc;
    InodeFd dir_fd;
    if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
    struct stat st;
    if (fstatat(dir_fd.get(), backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    if (int rc = ClearInternal(dir_fd.get(), backing, fs)) return rc;
    if (unlinkat(dir_fd.get(), backing.c_str(), AT_REMOVEDIR) != 0) return errno;
    fs.names().RemoveLongNameSideFile(dir_fd.get(), backing);
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  EnvelopeFs& fs = Fs(req);
  Inode& from_dir = GetInode(req, parent);
  Inode& to_dir = GetInode(req, newparent);
  UniqueFd replaced;  // dropped after the reply, as in OpUnlink
  int err = Guard("rename", [&]() -> int {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
    std::unique_lock lock(fs.namespace_mutex());
    std::string from, to;
    if (int rc = FindBacking(fs, from_dir, name, &from)) return rc;
    int found = FindBacking(fs, to_dir, newname, &to);
    if (found != 0 && found != ENOENT) return found;
    if (found == ENOENT) {
      if (flags & RENAME_EXCHANGE) return ENOENT;
      if (int rc = NewBacking(fs, to_dir, newname, &to)) return rc;
    }
    InodeFd from_fd, to_fd;
    if (int rc = fs.inodes().Use(from_dir, &from_fd)) return rc;
    if (int rc = fs.inodes().Use(to_dir, &to_fd)) return rc;
    if (found == 0 && !(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE))) {
      // Replacing a directory: it must be empty but for its internal files.
      struct stat src, dst;
      if (fstatat(to_fd.get(), to.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(dst.st_mode) &&
          fstatat(from_fd.get(), from.c_str(), &src, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(src.st_mode) && (src.st_ino != dst.st_ino || src.st_dev != dst.st_dev)) {
        if (int rc = ClearInternal(to_fd.get(), to, fs)) return rc;
      }
    }
    if (found == 0 && !(flags & RENAME_EXCHANGE)) {
      replaced.reset(openat(to_fd.get(), to.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    }
    // A long-target symlink replaced by the rename loses its side file with its last link.
    std::optional<BackingSymlinkDrop> replaced_symlink;
    if (found == 0 && !(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE))) {
      replaced_symlink.emplace(fs.names(), fs.volume().root_fd(), to_fd.get(), to);
    }
    if (renameat2(from_fd.get(), from.c_str(), to_fd.get(), to.c_str(), flags) != 0) {
      return errno;
    }
    if (replaced_symlink) replaced_symlink->Finish();
    bool same_entry = &from_dir == &to_dir && from == to;
    if (!(flags & RENAME_EXCHANGE) && !same_entry) {
      fs.names().RemoveLongNameSideFile(from_fd.get(), from);
    }
    return 0;
  });
  fuse_reply_err(req, err);
}

}  // namespace envelopefs
