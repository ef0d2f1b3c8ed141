// FUSE operations on extended attributes (user namespace, values sealed by NameTransform).
// Only regular files and directories carry user xattrs (as on Linux itself). The backing object
// is reached through /proc/self/fd, which is safe for those two types only: the magic link of a
// symlink's O_PATH fd would be followed.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "backing_entries.h"
#include "open_files.h"
#include "operations.h"
#include "request_context.h"

namespace envelopefs {
namespace {

bool HasXattrs(const Inode& inode) { return S_ISREG(inode.type) || S_ISDIR(inode.type); }

// What the xattr values of `inode` are bound to (NameTransform::SealXattrValue): nothing but
// the name in a format-1 volume; else a file's id or a directory's primary IV. 0 or an errno.
int XattrOwnerOf(EnvelopeFs& fs, Inode& inode, std::optional<XattrOwnerId>* owner) {
  owner->reset();
  if (!fs.names().BindsXattrsToObjects()) return 0;
  if (S_ISDIR(inode.type)) {
    DirIvs ivs;
    if (int rc = GetDirIvs(fs, inode, &ivs)) return rc;
    *owner = fs.names().DirectoryXattrOwner(ivs);
    return 0;
  }
  FileId id;
  if (int err = FileIdOf(fs, inode, &id)) return err;
  *owner = id;
  return 0;
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

}  // namespace

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
    InodeFd fd;
    if (int rc = fs.inodes().Use(inode, &fd)) return rc;
    std::string path = ProcFdPath(fd.get());
    if (setxattr(path.c_str(), backing->c_str(), sealed.data(), sealed.size(), flags) != 0) {
      return errno;
    }
    return 0;
  });
  fuse_reply_err(req, err);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  std::vector<uint8_t> plain;
  int err = Guard("getxattr", [&]() -> int {
    if (!HasXattrs(inode)) return ENODATA;
    auto backing = fs.names().ToBackingXattrName(name);
    if (!backing) return ENODATA;
    InodeFd fd;
    if (int rc = fs.inodes().Use(inode, &fd)) return rc;
    std::string path = ProcFdPath(fd.get());
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
      ReportDamage(fs.damage_reporter(),
                   {FdPath(fd.get(), "(unknown)"), std::nullopt,
                    "extended attribute " + *backing + ": value does not authenticate (EIO)"});
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
    InodeFd fd;
    if (int rc = fs.inodes().Use(inode, &fd)) return rc;
    std::string path = ProcFdPath(fd.get());
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
    InodeFd fd;
    if (int rc = fs.inodes().Use(inode, &fd)) return rc;
    std::string path = ProcFdPath(fd.get());
    return removexattr(path.c_str(), backing->c_str()) == 0 ? 0 : errno;
  });
  fuse_reply_err(req, err);
}

}  // namespace envelopefs
