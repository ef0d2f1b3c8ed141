#include "open_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "backing_entries.h"
#include "envelopefs/cipher_header.h"
#include "file_times.h"
#include "request_context.h"

namespace envelopefs {

std::shared_ptr<CipherFile> OpenCipherFile(EnvelopeFs& fs, Inode& inode) {
  // Only a regular file is ever reopened through /proc/self/fd (a symlink would be followed).
  if (!S_ISREG(inode.type)) throw Error(ErrorKind::kState, "not a regular file");
  // Concurrent opens of one inode wait for each other, not lookups: the header read and key
  // unwrap happen outside Inode::mutex.
  std::lock_guard<std::mutex> open_lock(inode.open_mutex);
  {
    std::lock_guard<std::mutex> lock(inode.mutex);
    if (auto file = inode.open_file.lock()) return file;
  }
  // The lease first: a stale inode (its object deleted behind our back) fails here, and never
  // finds the CipherFile of a new object with its old inode number.
  InodeFd inode_fd;
  if (int rc = fs.inodes().Use(inode, &inode_fd)) {
    errno = rc;
    ThrowSystemError("open");
  }
  if (auto file = fs.live_files().Find(inode_fd, inode.dev, inode.ino)) {  // an earlier Inode's
    std::lock_guard<std::mutex> lock(inode.mutex);
    inode.open_file = file;
    return file;
  }
  auto open_backing = [&] {
    std::string path = ProcFdPath(inode_fd.get());
    int flags = fs.options().read_only ? O_RDONLY : O_RDWR;
    int fd = OpenRetryingOnEmfile([&] { return open(path.c_str(), flags | O_CLOEXEC); });
    if (fd < 0 && !fs.options().read_only &&
        (errno == EROFS || errno == EACCES || errno == EPERM)) {
      fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) ThrowSystemError("open");
    return UniqueFd(fd);
  };
  // Log lines name the file by its current path, found only when needed (see CipherFile).
  std::shared_ptr<CipherFile> file;
  try {
    file = CipherFile::Open(open_backing(), fs.volume(), "", fs.damage_reporter());
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kKeyUnavailable) throw;
    fs.RefreshKeyring(/*force=*/true);  // rotated while mounted: the version may be new to us
    file = CipherFile::Open(open_backing(), fs.volume(), "", fs.damage_reporter());
  }
  fs.live_files().Remember(inode.dev, inode.ino, file);
  std::lock_guard<std::mutex> lock(inode.mutex);
  inode.open_file = file;
  return file;
}

int CreateRegular(fuse_req_t req, Inode& dir, const std::string& backing, mode_t mode, bool excl,
                  std::shared_ptr<CipherFile>* out) {
  EnvelopeFs& fs = Fs(req);
  InodeFd dir_fd;
  if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
  // The new file is made unnamed (O_TMPFILE) and linked in once its header is written, so that
  // no crash leaves a named file without a header (which reads as tampering: cut to nothing).
  int tmp = OpenRetryingOnEmfile(
      [&] { return openat(dir_fd.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode & 07777); });
  if (tmp >= 0) {
    UniqueFd owned(tmp);
    ChownFdToCaller(req, dir, tmp);
    fs.RefreshKeyring(/*force=*/false);  // new files go to the newest active KEK version
    auto file = CipherFile::Create(std::move(owned), fs.volume(), backing, fs.damage_reporter());
    if (linkat(AT_FDCWD, ProcFdPath(file->fd()).c_str(), dir_fd.get(), backing.c_str(),
               AT_SYMLINK_FOLLOW) != 0) {
      if (errno == EEXIST && !excl) return EEXIST;  // the caller opens the existing file
      return errno;
    }
    *out = std::move(file);
    return 0;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;
  // A backing file system without O_TMPFILE: created in place (a crash right after can leave
  // it without a header).
  int fd = OpenRetryingOnEmfile([&] {
    return openat(dir_fd.get(), backing.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
                  mode & 07777);
  });
  if (fd < 0) {
    if (errno == EEXIST && !excl) return EEXIST;  // the caller opens the existing file
    return errno;
  }
  UniqueFd owned(fd);
  ChownToCaller(req, dir, backing);
  fs.RefreshKeyring(/*force=*/false);  // new files go to the newest active KEK version
  try {
    *out = CipherFile::Create(std::move(owned), fs.volume(), backing, fs.damage_reporter());
  } catch (...) {
    unlinkat(dir_fd.get(), backing.c_str(), 0);
    throw;
  }
  return 0;
}

int TruncateFile(Inode& inode, CipherFile& file, uint64_t size) {
  if (int rc = ErrnoOf(file.Truncate(size))) return rc;
  std::lock_guard<std::mutex> lock(inode.mutex);  // a truncation to zero may change it
  inode.layout.reset();
  return 0;
}

int OpenWithFlags(EnvelopeFs& fs, Inode& inode, int flags, std::shared_ptr<CipherFile>* out) {
  std::shared_ptr<CipherFile> file = OpenCipherFile(fs, inode);
  if ((flags & O_TRUNC) != 0) {
    int rc = TruncateFile(inode, *file, 0);
    const struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    if (rc == 0) rc = ErrnoOf(file->SetTimes(now));  // as ext4 does, even for an empty file
    if (rc != 0) {
      ReleaseFile(fs, std::move(file));
      return rc;
    }
  }
  *out = std::move(file);
  return 0;
}

void ReleaseFile(EnvelopeFs& fs, std::shared_ptr<CipherFile> file) {
  if (!fs.options().read_only && file->NeedsSeal()) fs.sealer().Enqueue(std::move(file));
}

int FileIdOf(EnvelopeFs& fs, Inode& inode, FileId* id) {
  std::shared_ptr<CipherFile> open_file;
  {
    std::lock_guard<std::mutex> lock(inode.mutex);
    if (inode.file_id) {
      *id = *inode.file_id;
      return 0;
    }
    open_file = inode.open_file.lock();
  }
  if (open_file) {
    *id = open_file->file_id();
  } else {
    InodeFd inode_fd;
    if (int rc = fs.inodes().Use(inode, &inode_fd)) return rc;
    UniqueFd fd(OpenRetryingOnEmfile(
        [&] { return open(ProcFdPath(inode_fd.get()).c_str(), O_RDONLY | O_CLOEXEC); }));
    if (!fd.valid()) return errno;
    HeaderRead header = ReadHeader(fd.get());
    if (header.status == HeaderStatus::kUnreadable) return header.error != 0 ? header.error : EIO;
    if (header.status != HeaderStatus::kOk) {
      ReportDamage(fs.damage_reporter(), {FdPath(fd.get(), "(unknown)"), std::nullopt,
                                          "extended attributes: " + header.reason + " (EIO)"});
      return EIO;
    }
    OpenedHeader opened = OpenHeader(header, fs.volume(), /*check_length=*/false);
    if (!opened.ok && opened.kind == ErrorKind::kKeyUnavailable) {
      fs.RefreshKeyring(/*force=*/true);  // rotated while mounted
      opened = OpenHeader(header, fs.volume(), /*check_length=*/false);
    }
    if (!opened.ok) {
      // Not ErrnoFor's EACCES: that would read as "the daemon cannot open the file", which
      // RequireOwnFile lets through (a forged header must never allow a metadata change).
      if (opened.kind == ErrorKind::kKeyUnavailable) return ENOKEY;
      ReportDamage(fs.damage_reporter(), {FdPath(fd.get(), "(unknown)"), std::nullopt,
                                          "extended attributes: " + opened.problem + " (EIO)"});
      return EIO;
    }
    *id = header.fixed.file_id;
  }
  std::lock_guard<std::mutex> lock(inode.mutex);
  inode.file_id = *id;
  return 0;
}

// A regular file's metadata (modes, owners, times, extended attributes) changes only once its
// header authenticates: a backing entry that is a hard link to a file outside the volume
// (planted by whoever can write the cipher dir) must not be changed through the mount. 0 or an
// errno (EACCES only when the daemon cannot open the file at all).
int RequireOwnFile(EnvelopeFs& fs, Inode& inode) {
  if (!S_ISREG(inode.type)) return 0;
  FileId id;
  return FileIdOf(fs, inode, &id);
}

}  // namespace envelopefs
