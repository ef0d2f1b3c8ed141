#include "envelope_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <string>
#include <vector>

#include "envelopefs/cipher_header.h"
#include "envelopefs/error.h"
#include "envelopefs/file_header.h"
#include "envelopefs/log.h"

namespace envelopefs {
namespace {

// ---------------------------------------------------------------------------------------------
// Per-open state

struct FileHandle {
  std::shared_ptr<CipherFile> file;
  bool append = false;
};

struct DirEntry {
  std::string name;
  ino_t ino;
  unsigned char type;
  std::string backing;  // empty for "." and ".."
};

struct DirHandle {
  std::mutex mutex;
  std::vector<DirEntry> entries;
  bool loaded = false;
};

// Creating entries takes this shared; rmdir and rename onto a directory take it exclusively,
// so a directory is never removed while an entry is being created inside it.
std::shared_mutex namespace_mutex;

EnvelopeFs& Fs(fuse_req_t req) { return *static_cast<EnvelopeFs*>(fuse_req_userdata(req)); }

Inode& GetInode(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return Fs(req).root();
  return *reinterpret_cast<Inode*>(ino);
}

FileHandle& GetFile(fuse_file_info* fi) { return *reinterpret_cast<FileHandle*>(fi->fh); }

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The backing path of `fd` (for log lines), or `fallback` if the kernel cannot tell.
std::string BackingPath(int fd, const std::string& fallback = "(unknown)") {
  char target[4096];
  ssize_t n = readlink(ProcPath(fd).c_str(), target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : fallback;
}

// Runs `body`, turning exceptions from the core into errno values: a failure to authenticate
// is EIO (the core has logged it with the file), never unauthenticated data.
template <typename F>
int Guard(const char* op, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    Log(LogLevel::kError, std::string(op) + ": " + e.what());
    switch (e.kind()) {
      case ErrorKind::kIo:
        return EIO;
      case ErrorKind::kKeyUnavailable:
        return EACCES;
      default:
        return EIO;
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::exception& e) {
    Log(LogLevel::kError, std::string(op) + ": " + e.what());
    return EIO;
  }
}

int StatFd(int fd, struct stat* st) {
  return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

DirIvs GetDirIvs(EnvelopeFs& fs, Inode& dir) {
  std::lock_guard<std::mutex> lock(dir.mutex);
  if (!dir.dir_ivs) dir.dir_ivs = fs.names().ReadDirIvs(dir.fd.get());
  return *dir.dir_ivs;
}

// The chunk layout of the closed regular file `inode`, from its header (cached).
// (Reopening through /proc/self/fd is safe for a regular file: the magic link resolves to the
// very inode, and there is no symlink behind it to follow.)
std::optional<ChunkLayout> LayoutOf(Inode& inode) {
  {
    std::lock_guard<std::mutex> lock(inode.mutex);
    if (inode.layout) return inode.layout;
  }
  UniqueFd fd(open(ProcPath(inode.fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  HeaderRead header = ReadHeader(fd.get());
  if (header.status != HeaderStatus::kOk) return std::nullopt;  // opening the file will say why
  std::lock_guard<std::mutex> lock(inode.mutex);
  inode.layout = header.layout();
  return inode.layout;
}

// The plaintext view of a backing object's attributes.
void ToPlainAttr(EnvelopeFs& fs, Inode* inode, int fd, struct stat& st) {
  if (S_ISREG(st.st_mode)) {
    std::shared_ptr<CipherFile> open;
    if (inode != nullptr) {
      std::lock_guard<std::mutex> lock(inode->mutex);
      open = inode->open_file.lock();
    }
    if (open) {
      st.st_size = static_cast<off_t>(open->size());
      return;
    }
    // Closed: from the cipher file's length (authenticated when the file is opened). Small
    // files map the same in every format version; larger ones need the header's layout.
    const uint64_t cipher_size = static_cast<uint64_t>(st.st_size);
    ChunkLayout layout{fs.volume().config().chunk_size, true};
    if (!layout.SizeIsVersionIndependent(cipher_size) && inode != nullptr) {
      if (auto own = LayoutOf(*inode)) layout = *own;
    }
    st.st_size = static_cast<off_t>(layout.ReportedPlainSize(cipher_size));
  } else if (S_ISLNK(st.st_mode)) {
    std::vector<char> buf(static_cast<size_t>(st.st_size) + 1);
    ssize_t n = readlinkat(fd, "", buf.data(), buf.size());
    if (n >= 0) {
      auto target = fs.names().DecryptSymlink(std::string_view(buf.data(), n));
      st.st_size = target ? static_cast<off_t>(target->size()) : 0;
    }
  }
}

int GetAttr(EnvelopeFs& fs, Inode& inode, struct stat* st) {
  if (int err = StatFd(inode.fd.get(), st)) return err;
  ToPlainAttr(fs, &inode, inode.fd.get(), *st);
  return 0;
}

// Finds the backing name of an existing entry `name` in `dir`, trying alternate IVs.
// Returns 0 and fills `backing`, or an errno.
int FindBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing) {
  DirIvs ivs = GetDirIvs(fs, dir);
  auto primary = fs.names().ToBacking(ivs.primary, name, dir.is_root);
  if (!primary) return std::strlen(name) > kMaxNameLength ? ENAMETOOLONG : ENOENT;
  struct stat st;
  if (fstatat(dir.fd.get(), primary->c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
    *backing = *primary;
    return 0;
  }
  for (const DirIv& iv : ivs.alternates) {
    auto alt = fs.names().ToBacking(iv, name, dir.is_root);
    if (alt && fstatat(dir.fd.get(), alt->c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      *backing = *alt;
      return 0;
    }
  }
  *backing = *primary;
  return ENOENT;
}

// The backing name for a new entry `name` in `dir` (primary IV).
int NewBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing) {
  DirIvs ivs = GetDirIvs(fs, dir);
  auto b = fs.names().ToBacking(ivs.primary, name, dir.is_root);
  if (!b) {
    size_t len = std::strlen(name);
    return len > kMaxNameLength ? ENAMETOOLONG : EPERM;  // reserved name
  }
  *backing = *b;
  if (NameTransform::IsLongName(*backing)) {
    if (int rc = fs.names().WriteLongNameSideFile(dir.fd.get(), ivs.primary, name, *backing);
        rc < 0) {
      return -rc;
    }
  }
  return 0;
}

// Looks up backing entry `backing` in `dir` and fills `e` (incrementing its lookup count).
int LookupBacking(EnvelopeFs& fs, Inode& dir, const std::string& backing, std::string_view name,
                  fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  int fd = openat(dir.fd.get(), backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  UniqueFd owned(fd);
  struct stat st;
  if (int err = StatFd(fd, &st)) return err;
  Inode* inode =
      fs.inodes().FindOrInsert(std::move(owned), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
  ToPlainAttr(fs, inode, inode->fd.get(), st);
  {
    std::lock_guard<std::mutex> lock(inode->mutex);  // where the kernel last saw it
    inode->parent = dir.is_root ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(&dir);
    inode->name.assign(name);
  }
  e->ino = reinterpret_cast<fuse_ino_t>(inode);
  e->attr = st;
  e->attr_timeout = fs.options().attr_timeout;
  e->entry_timeout = fs.options().entry_timeout;
  return 0;
}

// Gives a new entry to the requesting user when the daemon runs as root (allow_other).
void ChownToCaller(fuse_req_t req, Inode& dir, const std::string& backing) {
  if (geteuid() != 0) return;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  gid_t gid = ctx->gid;
  struct stat parent;
  if (StatFd(dir.fd.get(), &parent) == 0 && (parent.st_mode & S_ISGID)) gid = parent.st_gid;
  if (fchownat(dir.fd.get(), backing.c_str(), ctx->uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    Log(LogLevel::kWarning, std::string("chown of a new entry failed: ") + std::strerror(errno));
  }
}

std::shared_ptr<CipherFile> OpenCipherFile(EnvelopeFs& fs, Inode& inode) {
  // Only a regular file is ever reopened through /proc/self/fd (a symlink would be followed).
  if (!S_ISREG(inode.type)) throw Error(ErrorKind::kState, "not a regular file");
  std::lock_guard<std::mutex> lock(inode.mutex);
  if (auto file = inode.open_file.lock()) return file;
  auto open_backing = [&] {
    std::string path = ProcPath(inode.fd.get());
    int flags = fs.options().read_only ? O_RDONLY : O_RDWR;
    int fd = open(path.c_str(), flags | O_CLOEXEC);
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
    file = CipherFile::Open(open_backing(), fs.volume(), "");
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kKeyUnavailable) throw;
    fs.RefreshKeyring(/*force=*/true);  // rotated while mounted: the version may be new to us
    file = CipherFile::Open(open_backing(), fs.volume(), "");
  }
  inode.open_file = file;
  return file;
}

// Enqueues a file whose size record needs sealing after its last close.
void ReleaseFile(EnvelopeFs& fs, std::shared_ptr<CipherFile> file) {
  if (!fs.options().read_only && file->NeedsSeal()) fs.sealer().Enqueue(std::move(file));
}

// ---------------------------------------------------------------------------------------------
// Operations

void OpInit(void* userdata, fuse_conn_info* conn) {
  (void)userdata;
  conn->max_write = 1u << 20;  // 1 MiB requests: libfuse negotiates max_pages accordingly
  conn->max_readahead = 1u << 20;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  conn->want &= ~FUSE_CAP_SPLICE_READ;
}

void OpDestroy(void* userdata) { static_cast<EnvelopeFs*>(userdata)->sealer().Flush(); }

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

int FileIdOf(EnvelopeFs& fs, Inode& inode, FileId* id);  // extended attributes, below

// A regular file's metadata (modes, owners, times, extended attributes) changes only once its
// header authenticates: a backing entry that is a hard link to a file outside the volume
// (planted by whoever can write the cipher dir) must not be changed through the mount. 0 or an
// errno (EACCES only when the daemon cannot open the file at all).
int RequireOwnFile(EnvelopeFs& fs, Inode& inode) {
  if (!S_ISREG(inode.type)) return 0;
  FileId id;
  return FileIdOf(fs, inode, &id);
}

void OpSetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  int err = Guard("setattr", [&]() -> int {
    std::string path = ProcPath(inode.fd.get());
    constexpr int kMetadata = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                              FUSE_SET_ATTR_MTIME_NOW;
    if (to_set & kMetadata) {
      int rc = RequireOwnFile(fs, inode);
      // A daemon that is not root cannot open a file its owner made unreadable (mode 000), and
      // must still let the owner chmod it back, as ext4 does; root opens every file.
      if (rc != 0 && !(rc == EACCES && geteuid() != 0)) return rc;
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
      if (chmod(path.c_str(), attr->st_mode & 07777) != 0) return errno;
    }
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
      gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
      if (fchownat(inode.fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        return errno;
      }
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (!S_ISREG(inode.type)) return EINVAL;
      std::shared_ptr<CipherFile> file =
          fi != nullptr ? GetFile(fi).file : OpenCipherFile(fs, inode);
      if (int rc = file->Truncate(static_cast<uint64_t>(attr->st_size)); rc < 0) return -rc;
      {
        std::lock_guard<std::mutex> lock(inode.mutex);  // a truncation to zero may change it
        inode.layout.reset();
      }
      if (fi == nullptr) ReleaseFile(fs, std::move(file));
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
      int rc = S_ISLNK(inode.type)
                   ? utimensat(inode.fd.get(), "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
                   : utimensat(AT_FDCWD, path.c_str(), times, 0);
      if (rc != 0) return errno;
    }
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  OpGetAttr(req, ino, fi);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  EnvelopeFs& fs = Fs(req);
  std::string target;
  int err = Guard("readlink", [&] {
    char buf[PATH_MAX + 1];
    ssize_t n = readlinkat(GetInode(req, ino).fd.get(), "", buf, sizeof buf);
    if (n < 0) return errno;
    auto plain = fs.names().DecryptSymlink(std::string_view(buf, static_cast<size_t>(n)));
    if (!plain) {
      ReportTamper(BackingPath(GetInode(req, ino).fd.get()),
                   "symlink target does not authenticate (EIO)");
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

// Creates a regular file's backing object with a fresh header. Returns the CipherFile.
int CreateRegular(fuse_req_t req, Inode& dir, const std::string& backing, mode_t mode, bool excl,
                  std::shared_ptr<CipherFile>* out) {
  EnvelopeFs& fs = Fs(req);
  int fd = openat(dir.fd.get(), backing.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
                  mode & 07777);
  if (fd < 0) {
    if (errno == EEXIST && !excl) return EEXIST;  // the caller opens the existing file
    return errno;
  }
  UniqueFd owned(fd);
  ChownToCaller(req, dir, backing);
  fs.RefreshKeyring(/*force=*/false);  // new files go to the newest active KEK version
  try {
    *out = CipherFile::Create(std::move(owned), fs.volume(), backing);
  } catch (...) {
    unlinkat(dir.fd.get(), backing.c_str(), 0);
    throw;
  }
  return 0;
}

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

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  std::string backing;
  int err = Guard("mknod", [&]() -> int {
    std::shared_lock lock(namespace_mutex);
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    if (S_ISREG(mode)) {
      std::shared_ptr<CipherFile> file;
      if (int rc = CreateRegular(req, dir, backing, mode, true, &file)) return rc;
      return 0;
    }
    if (mknodat(dir.fd.get(), backing.c_str(), mode, rdev) != 0) return errno;
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
    std::shared_lock lock(namespace_mutex);
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    if (int rc = fs.names().MakeDirectory(dir.fd.get(), backing, mode & 07777); rc < 0) return -rc;
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
    std::shared_lock lock(namespace_mutex);
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    std::string stored = fs.names().EncryptSymlink(link);
    if (stored.size() >= PATH_MAX) return ENAMETOOLONG;
    if (symlinkat(stored.c_str(), dir.fd.get(), backing.c_str()) != 0) return errno;
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
    std::shared_lock lock(namespace_mutex);
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    std::string path = ProcPath(GetInode(req, ino).fd.get());
    if (linkat(AT_FDCWD, path.c_str(), dir.fd.get(), backing.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      return errno;
    }
    return 0;
  });
  ReplyNewEntry(req, dir, backing, name, err);
}

// True if the backing directory `fd` holds nothing but internal files.
int CheckEmpty(EnvelopeFs& fs, int dirfd, std::vector<std::string>* internal) {
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
  int dirfd = openat(parent_fd, backing.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  int err = Guard("unlink", [&]() -> int {
    std::shared_lock lock(namespace_mutex);
    std::string backing;
    if (int rc = FindBacking(fs, dir, name, &backing)) return rc;
    if (unlinkat(dir.fd.get(), backing.c_str(), 0) != 0) return errno;
    fs.names().RemoveLongNameSideFile(dir.fd.get(), backing);
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  int err = Guard("rmdir", [&]() -> int {
    std::unique_lock lock(namespace_mutex);
    std::string backing;
    if (int rc = FindBacking(fs, dir, name, &backing)) return rc;
    struct stat st;
    if (fstatat(dir.fd.get(), backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    if (int rc = ClearInternal(dir.fd.get(), backing, fs)) return rc;
    if (unlinkat(dir.fd.get(), backing.c_str(), AT_REMOVEDIR) != 0) return errno;
    fs.names().RemoveLongNameSideFile(dir.fd.get(), backing);
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  EnvelopeFs& fs = Fs(req);
  Inode& from_dir = GetInode(req, parent);
  Inode& to_dir = GetInode(req, newparent);
  int err = Guard("rename", [&]() -> int {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
    std::unique_lock lock(namespace_mutex);
    std::string from, to;
    if (int rc = FindBacking(fs, from_dir, name, &from)) return rc;
    int found = FindBacking(fs, to_dir, newname, &to);
    if (found != 0 && found != ENOENT) return found;
    if (found == ENOENT) {
      if (flags & RENAME_EXCHANGE) return ENOENT;
      if (int rc = NewBacking(fs, to_dir, newname, &to)) return rc;
    } else if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE))) {
      // Replacing a directory: it must be empty but for its internal files.
      struct stat src, dst;
      if (fstatat(to_dir.fd.get(), to.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(dst.st_mode) &&
          fstatat(from_dir.fd.get(), from.c_str(), &src, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(src.st_mode) && (src.st_ino != dst.st_ino || src.st_dev != dst.st_dev)) {
        if (int rc = ClearInternal(to_dir.fd.get(), to, fs)) return rc;
      }
    }
    if (renameat2(from_dir.fd.get(), from.c_str(), to_dir.fd.get(), to.c_str(), flags) != 0) {
      return errno;
    }
    bool same_entry = &from_dir == &to_dir && from == to;
    if (!(flags & RENAME_EXCHANGE) && !same_entry) {
      fs.names().RemoveLongNameSideFile(from_dir.fd.get(), from);
    }
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  FileHandle* handle = nullptr;
  int err = Guard("open", [&]() -> int {
    if (fs.options().read_only && (fi->flags & O_ACCMODE) != O_RDONLY) return EROFS;
    auto file = OpenCipherFile(fs, inode);
    handle = new FileHandle{std::move(file), (fi->flags & O_APPEND) != 0};
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(handle);
  fi->keep_cache = 1;  // every change goes through this mount, so the page cache stays valid
  if (fuse_reply_open(req, fi) == -ENOENT) {
    ReleaseFile(fs, std::move(handle->file));
    delete handle;
  }
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  EnvelopeFs& fs = Fs(req);
  Inode& dir = GetInode(req, parent);
  fuse_entry_param e;
  FileHandle* handle = nullptr;
  int err = Guard("create", [&]() -> int {
    std::shared_lock lock(namespace_mutex);
    std::string backing;
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    std::shared_ptr<CipherFile> file;
    int rc = CreateRegular(req, dir, backing, mode, (fi->flags & O_EXCL) != 0, &file);
    if (rc != 0 && rc != EEXIST) return rc;
    if (int lrc = LookupBacking(fs, dir, backing, name, &e)) return lrc;
    Inode& inode = *reinterpret_cast<Inode*>(e.ino);
    if (file) {
      std::lock_guard<std::mutex> ilock(inode.mutex);
      inode.open_file = file;
    } else {
      file = OpenCipherFile(fs, inode);  // created concurrently by someone else: open it
    }
    handle = new FileHandle{std::move(file), (fi->flags & O_APPEND) != 0};
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(handle);
  fi->keep_cache = 1;
  if (fuse_reply_create(req, &e, fi) == -ENOENT) {
    ReleaseFile(fs, std::move(handle->file));
    delete handle;
  }
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)ino;
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < size) buffer.resize(size);
  ssize_t n = 0;
  int err = Guard("read", [&] {
    n = GetFile(fi).file->Read(std::span<uint8_t>(buffer.data(), size), static_cast<uint64_t>(off));
    return n < 0 ? static_cast<int>(-n) : 0;
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), static_cast<size_t>(n));
  }
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  (void)ino;
  ssize_t n = 0;
  int err = Guard("write", [&] {
    FileHandle& handle = GetFile(fi);
    std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(buf), size);
    n = handle.append ? handle.file->Append(data)
                      : handle.file->Write(data, static_cast<uint64_t>(off));
    return n < 0 ? static_cast<int>(-n) : 0;
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  FileHandle* handle = &GetFile(fi);
  ReleaseFile(Fs(req), std::move(handle->file));
  delete handle;
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  int err = Guard("fsync", [&] { return -GetFile(fi).file->Sync(); });
  fuse_reply_err(req, err);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  int err = Guard("fallocate", [&] {
    if (offset < 0 || length <= 0) return EINVAL;
    return -GetFile(fi).file->Allocate(mode, static_cast<uint64_t>(offset),
                                       static_cast<uint64_t>(length));
  });
  fuse_reply_err(req, err);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  fi->fh = reinterpret_cast<uint64_t>(new DirHandle);
  fuse_reply_open(req, fi);
}

int LoadDir(EnvelopeFs& fs, Inode& dir, DirHandle& handle) {
  handle.entries.clear();
  DirIvs ivs = GetDirIvs(fs, dir);
  int fd = openat(dir.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return errno;
  }
  handle.entries.push_back({".", dir.ino, DT_DIR, ""});
  // ".." needs an inode number (readdir(3) skips entries with none). The root's parent is
  // outside the volume: as at the root of any mount, ".." is the root itself.
  struct stat parent;
  const bool parent_known =
      !dir.is_root && fstatat(dirfd(d), "..", &parent, AT_SYMLINK_NOFOLLOW) == 0;
  handle.entries.push_back({"..", parent_known ? parent.st_ino : dir.ino, DT_DIR, ""});
  while (dirent* ent = readdir(d)) {
    std::string_view n = ent->d_name;
    if (n == "." || n == ".." || fs.names().IsInternal(n, dir.is_root)) continue;
    auto plain = fs.names().FromBacking(dirfd(d), ivs, n);
    if (!plain) {
      ReportTamper(BackingPath(dir.fd.get()) + "/" + std::string(n),
                   "entry name does not authenticate; hidden from the listing");
      continue;
    }
    handle.entries.push_back({std::move(*plain), ent->d_ino, ent->d_type, std::string(n)});
  }
  closedir(d);
  handle.loaded = true;
  return 0;
}

// Adds entry `i` of `handle` to `buf` for readdir or (`plus`) readdirplus, which also looks the
// entry up (saving the kernel a LOOKUP per entry, e.g. for ls -l). Returns the bytes used, or 0
// if it does not fit (the lookup is then undone). Entries that vanished are skipped (returns
// SIZE_MAX).
size_t AddDirEntry(fuse_req_t req, Inode& dir, const DirEntry& ent, size_t i, bool plus, char* buf,
                   size_t room) {
  if (!plus) {
    struct stat st {};
    st.st_ino = ent.ino;
    st.st_mode = static_cast<mode_t>(ent.type) << 12;
    size_t need =
        fuse_add_direntry(req, buf, room, ent.name.c_str(), &st, static_cast<off_t>(i + 1));
    return need > room ? 0 : need;
  }
  fuse_entry_param e{};
  Inode* looked_up = nullptr;
  if (ent.backing.empty()) {  // "." and "..": attributes only, no lookup
    e.attr.st_ino = ent.ino;
    e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
  } else {
    int err = Guard("readdirplus",
                    [&] { return LookupBacking(Fs(req), dir, ent.backing, ent.name, &e); });
    if (err) return SIZE_MAX;  // removed since the directory was read
    looked_up = reinterpret_cast<Inode*>(e.ino);
  }
  size_t need =
      fuse_add_direntry_plus(req, buf, room, ent.name.c_str(), &e, static_cast<off_t>(i + 1));
  if (need > room) {
    if (looked_up != nullptr) Fs(req).inodes().Forget(looked_up, 1);
    return 0;
  }
  return need;
}

void ReadDirectory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                   bool plus) {
  EnvelopeFs& fs = Fs(req);
  DirHandle& handle = *reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  int err = 0;
  {
    // Replies go out only after the handle's lock is released: once the kernel has the reply
    // it may send releasedir, which frees the handle.
    std::lock_guard<std::mutex> lock(handle.mutex);
    Inode& dir = GetInode(req, ino);
    err = Guard("readdir", [&] {
      if (off == 0 || !handle.loaded) return LoadDir(fs, dir, handle);
      return 0;
    });
    for (size_t i = static_cast<size_t>(off); err == 0 && i < handle.entries.size(); ++i) {
      size_t n = AddDirEntry(req, dir, handle.entries[i], i, plus, buf.data() + used, size - used);
      if (n == 0) break;
      if (n != SIZE_MAX) used += n;
    }
  }
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirectory(req, ino, size, off, fi, /*plus=*/false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirectory(req, ino, size, off, fi, /*plus=*/true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  int fd = openat(GetInode(req, ino).fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    if ((datasync ? fdatasync(fd) : fsync(fd)) != 0) err = errno;
    close(fd);
  }
  fuse_reply_err(req, err);
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  int fd = openat(GetInode(req, ino).fd.get(), ".", O_RDONLY | O_CLOEXEC);
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

// --- extended attributes ----------------------------------------------------------------------
// Only regular files and directories carry user xattrs (as on Linux itself). The backing object
// is reached through /proc/self/fd, which is safe for those two types only: the magic link of a
// symlink's O_PATH fd would be followed.

bool HasXattrs(const Inode& inode) { return S_ISREG(inode.type) || S_ISDIR(inode.type); }

// The authenticated file id of the regular file `inode`: from its open CipherFile, else from its
// header (the key slot's wrap authenticates the fixed part, the file id included). Cached in the
// inode: a file keeps its id for life. Returns 0 or an errno (EIO: the header does not open;
// ENOKEY: it names a KEK this volume does not have).
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
    UniqueFd fd(open(ProcPath(inode.fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return errno;
    HeaderRead header = ReadHeader(fd.get());
    if (header.status == HeaderStatus::kUnreadable) return header.error != 0 ? header.error : EIO;
    if (header.status != HeaderStatus::kOk) {
      ReportTamper(BackingPath(fd.get()), "extended attributes: " + header.reason + " (EIO)");
      return EIO;
    }
    OpenedHeader opened = OpenHeader(header, fs.volume(), /*check_length=*/false);
    if (!opened.ok && opened.kind == ErrorKind::kKeyUnavailable) {
      fs.RefreshKeyring(/*force=*/true);  // rotated while mounted
      opened = OpenHeader(header, fs.volume(), /*check_length=*/false);
    }
    if (!opened.ok) {
      if (opened.kind == ErrorKind::kKeyUnavailable) return ENOKEY;
      ReportTamper(BackingPath(fd.get()), "extended attributes: " + opened.problem + " (EIO)");
      return EIO;
    }
    *id = header.fixed.file_id;
  }
  std::lock_guard<std::mutex> lock(inode.mutex);
  inode.file_id = *id;
  return 0;
}

// What the xattr values of `inode` are bound to (NameTransform::SealXattrValue): nothing but
// the name in a format-1 volume; else a file's id or a directory's primary IV. 0 or an errno.
int XattrOwnerOf(EnvelopeFs& fs, Inode& inode, std::optional<XattrOwnerId>* owner) {
  owner->reset();
  if (!fs.names().BindsXattrsToObjects()) return 0;
  if (S_ISDIR(inode.type)) {
    *owner = fs.names().DirectoryXattrOwner(GetDirIvs(fs, inode));
    return 0;
  }
  FileId id;
  if (int err = FileIdOf(fs, inode, &id)) return err;
  *owner = id;
  return 0;
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  int err = Guard("setxattr", [&]() -> int {
    if (!HasXattrs(inode)) return EPERM;
    auto backing = fs.names().ToBackingXattrName(name);
    if (!backing) return EOPNOTSUPP;
    if (int rc = RequireOwnFile(fs, inode)) return rc;
    std::optional<XattrOwnerId> owner;
    if (int rc = XattrOwnerOf(fs, inode, &owner)) return rc;
    auto sealed = fs.names().SealXattrValue(
        *backing, owner, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value), size));
    std::string path = ProcPath(inode.fd.get());
    if (setxattr(path.c_str(), backing->c_str(), sealed.data(), sealed.size(), flags) != 0) {
      return errno;
    }
    return 0;
  });
  fuse_reply_err(req, err);
}

// The reply to getxattr/listxattr: the size when asked with size 0, else the data or ERANGE.
void ReplyXattr(fuse_req_t req, int err, size_t size, const char* data, size_t len) {
  if (err) {
    fuse_reply_err(req, err);
  } else if (size == 0) {
    fuse_reply_xattr(req, len);
  } else if (len > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, data, len);
  }
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  std::vector<uint8_t> plain;
  int err = Guard("getxattr", [&]() -> int {
    if (!HasXattrs(inode)) return ENODATA;
    auto backing = fs.names().ToBackingXattrName(name);
    if (!backing) return ENODATA;
    std::string path = ProcPath(inode.fd.get());
    ssize_t n = getxattr(path.c_str(), backing->c_str(), nullptr, 0);
    if (n < 0) return errno;
    std::vector<uint8_t> sealed(static_cast<size_t>(n));
    n = getxattr(path.c_str(), backing->c_str(), sealed.data(), sealed.size());
    if (n < 0) return errno;
    sealed.resize(static_cast<size_t>(n));
    std::optional<XattrOwnerId> owner;
    if (int rc = XattrOwnerOf(fs, inode, &owner)) return rc;
    auto opened = fs.names().OpenXattrValue(*backing, owner, sealed);
    if (!opened) {
      ReportTamper(BackingPath(inode.fd.get()),
                   "extended attribute " + *backing + ": value does not authenticate (EIO)");
      return EIO;
    }
    plain = std::move(*opened);
    return 0;
  });
  ReplyXattr(req, err, size, reinterpret_cast<const char*>(plain.data()), plain.size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  std::string list;
  int err = Guard("listxattr", [&]() -> int {
    if (!HasXattrs(inode)) return 0;  // an empty list
    std::string path = ProcPath(inode.fd.get());
    ssize_t n = listxattr(path.c_str(), nullptr, 0);
    if (n < 0) return errno;
    std::vector<char> raw(static_cast<size_t>(n) + 1);
    n = listxattr(path.c_str(), raw.data(), raw.size());
    if (n < 0) return errno;
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      std::string_view backing(raw.data() + pos);
      pos += backing.size() + 1;
      if (auto plain = fs.names().FromBackingXattrName(backing)) {
        list.append(*plain);
        list.push_back('\0');
      }
    }
    return 0;
  });
  ReplyXattr(req, err, size, list.data(), list.size());
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  int err = Guard("removexattr", [&]() -> int {
    if (!HasXattrs(inode)) return EPERM;
    auto backing = fs.names().ToBackingXattrName(name);
    if (!backing) return ENODATA;
    if (int rc = RequireOwnFile(fs, inode)) return rc;
    std::string path = ProcPath(inode.fd.get());
    return removexattr(path.c_str(), backing->c_str()) == 0 ? 0 : errno;
  });
  fuse_reply_err(req, err);
}

fuse_lowlevel_ops MakeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetAttr;
  ops.setattr = OpSetAttr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.fallocate = OpFallocate;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  return ops;
}

}  // namespace

void EnvelopeFs::RefreshKeyring(bool force) {
  using namespace std::chrono;
  const int64_t now = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  int64_t last = keyring_checked_ms_.load();
  if (!force && now - last < 1000) return;
  if (!keyring_checked_ms_.compare_exchange_strong(last, now) && !force) return;
  try {
    volume_->ReloadKeyringIfChanged();
  } catch (const Error& e) {
    Log(LogLevel::kError, std::string("keeping the current keyring: ") + e.what());
  }
}

EnvelopeFs::EnvelopeFs(std::unique_ptr<Volume> volume, const MountOptions& options)
    : volume_(std::move(volume)),
      names_(volume_->name_key(), volume_->xattr_key(), volume_->config().plaintext_names,
             volume_->config().format_version),
      options_(options) {
  // The very directory the volume was opened from (never the path again: it may have been
  // swapped since).
  int fd = fcntl(volume_->root_fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) ThrowSystemError("open " + volume_->cipher_dir().string());
  root_.fd.reset(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) ThrowSystemError("stat " + volume_->cipher_dir().string());
  root_.dev = st.st_dev;
  root_.ino = st.st_ino;
  root_.type = S_IFDIR;
  root_.is_root = true;
  root_.nlookup = 2;
  int sync_fd = open(volume_->cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sync_fd < 0) ThrowSystemError("open " + volume_->cipher_dir().string());
  sync_fd_.reset(sync_fd);
  sealer_ = std::make_unique<Sealer>(sync_fd, options.seal_interval_seconds);
}

EnvelopeFs::~EnvelopeFs() = default;

const fuse_lowlevel_ops& EnvelopeFs::Operations() {
  static const fuse_lowlevel_ops ops = MakeOperations();
  return ops;
}

}  // namespace envelopefs
