// FUSE operations on attributes: getattr, setattr (modes, owners, size, times) and statfs.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "backing_entries.h"
#include "envelopefs/shown_ctime.h"
#include "file_times.h"
#include "open_files.h"
#include "operations.h"
#include "request_context.h"

namespace envelopefs {

void OpGetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)fi;
  struct stat st;
  int err = Guard("getattr", [&] { return GetAttr(Fs(req), GetInode(req, ino), &st); });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, Fs(req).options().attr_timeout);
  }
}

void OpSetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  int err = Guard("setattr", [&]() -> int {
    InodeFd fd;
    if (int rc = fs.inodes().Use(inode, &fd)) return rc;
    std::string path = ProcFdPath(fd.get());
    constexpr int kMetadata = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                              FUSE_SET_ATTR_MTIME_NOW;
    if (to_set & kMetadata) {
      int rc = RequireOwnFile(fs, inode);
      // A daemon that is not root cannot open a file its owner made unreadable (mode 000), and
      // must still let the owner chmod it back, as ext4 does; root opens every file.
      if (rc != 0 && !(rc == EACCES && geteuid() != 0)) return rc;
    }
    // chown(f, -1, -1) changes nothing but the change time, as on ext4; the kernel sends it
    // with nothing to set (FUSE_SET_ATTR_CTIME only with the writeback cache).
    const bool only_ctime = (to_set & ~FUSE_SET_ATTR_CTIME) == 0;
    // Right after a seal, a change would read as the seal's own (shown_ctime.h).
    if (S_ISREG(inode.type) && (only_ctime || (to_set & kMetadata))) {
      SettleShownCtime(fd.get());
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
      std::lock_guard<std::mutex> lock(inode.mode_mutex);  // see DropSetIdBitsBeforeWrite
      if (chmod(path.c_str(), attr->st_mode & 07777) != 0) return errno;
    }
    if (only_ctime || (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
      uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
      gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
      if (fchownat(fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        return errno;
      }
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (!S_ISREG(inode.type)) return EINVAL;
      std::shared_ptr<CipherFile> file =
          fi != nullptr ? GetFile(fi).file : OpenCipherFile(fs, inode);
      const int rc = TruncateFile(inode, *file, static_cast<uint64_t>(attr->st_size));
      if (fi == nullptr) ReleaseFile(fs, std::move(file));
      if (rc != 0) return rc;
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
      struct timespec times[2];
      times[0].tv_nsec = UTIME_OMIT;
      times[1].tv_nsec = UTIME_OMIT;
      if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
        times[0].tv_nsec = UTIME_NOW;
      } else if (to_set & FUSE_SET_ATTR_ATIME) {
        times[0] = attr->st_atim;
      }
      if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
        times[1].tv_nsec = UTIME_NOW;
      } else if (to_set & FUSE_SET_ATTR_MTIME) {
        times[1] = attr->st_mtim;
      }
      if (int rc = SetFileTimes(inode, fd.get(), times)) return rc;
    }
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  OpGetAttr(req, ino, fi);
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  InodeFd inode_fd;
  if (int rc = Fs(req).inodes().Use(GetInode(req, ino), &inode_fd)) {
    fuse_reply_err(req, rc);
    return;
  }
  // (fstatvfs(2) does not take an O_PATH descriptor.)
  int fd = OpenRetryingOnEmfile([&] { return openat(inode_fd.get(), ".", O_RDONLY | O_CLOEXEC); });
  if (fd < 0 || fstatvfs(fd, &sv) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    fuse_reply_err(req, err);
    return;
  }
  close(fd);
  sv.f_namemax = kMaxNameLength;
  fuse_reply_statfs(req, &sv);
}

}  // namespace envelopefs
