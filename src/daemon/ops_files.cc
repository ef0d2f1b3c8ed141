// FUSE operations on file contents: open, create, read, write, release, fsync and
// fallocate, plus init and destroy of the session.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
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
namespace {

// An open with O_DIRECT bypasses the page cache through the kernel's direct_io path: one round
// trip per write instead of two (the buffered path asks for security.capability before each
// write, libfuse 3.14 cannot negotiate FUSE_HANDLE_KILLPRIV_V2), and what an O_DIRECT caller
// asks for anyway. The kernel invalidates cached pages of the range a direct write covers.
// A file with set-ID bits stays on the buffered path, where the kernel clears them on writes.
FileHandle* NewFileHandle(std::shared_ptr<CipherFile> file, int open_flags) {
  bool direct = (open_flags & O_DIRECT) != 0;
  struct stat st;
  if (direct && (fstat(file->fd(), &st) != 0 || (st.st_mode & (S_ISUID | S_ISGID)) != 0)) {
    direct = false;
  }
  return new FileHandle{std::move(file), (open_flags & O_APPEND) != 0, direct};
}

// Before a write through a direct_io handle, which does not pass the kernel's file_remove_privs:
// clears the set-user-ID bit, and the set-group-ID bit of a group-executable file, as the
// kernel does for a buffered write through FUSE by a writer without CAP_FSETID (for a file
// that got the bits after it was opened: NewFileHandle). libfuse 3.14 does not pass on the
// kernel's FUSE_WRITE_KILL_SUIDGID flag, so "without CAP_FSETID" is taken as "not uid 0".
// 0 or an errno.
int DropSetIdBitsBeforeWrite(fuse_req_t req, fuse_ino_t ino, Inode& inode, const CipherFile& file) {
  if (fuse_req_ctx(req)->uid == 0) return 0;
  std::lock_guard<std::mutex> lock(inode.mode_mutex);  // no chmod between fstat and fchmod
  struct stat st;
  if (fstat(file.fd(), &st) != 0) return errno;
  mode_t drop = st.st_mode & S_ISUID;
  if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) drop |= S_ISGID;
  if (drop == 0) return 0;
  SettleShownCtime(file.fd());
  if (fchmod(file.fd(), st.st_mode & 07777 & ~drop) != 0) return errno;
  // A direct write makes the kernel fetch size and times again, not the mode: without this an
  // exec right after would still see the bits. (Attributes only: no lock of the inode taken.)
  fuse_lowlevel_notify_inval_inode(Fs(req).session(), ino, -1, 0);
  return 0;
}

}  // namespace

void OpInit(void* userdata, fuse_conn_info* conn) {
  (void)userdata;
  conn->max_write = 1u << 20;  // 1 MiB requests: libfuse negotiates max_pages accordingly
  conn->max_readahead = 1u << 20;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  conn->want &= ~FUSE_CAP_SPLICE_READ;
}

void OpDestroy(void* userdata) {
  static_cast<EnvelopeFs*>(userdata)->sealer().Flush();
  ReleaseAllDirHandles();
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  EnvelopeFs& fs = Fs(req);
  Inode& inode = GetInode(req, ino);
  FileHandle* handle = nullptr;
  int err = Guard("open", [&]() -> int {
    const bool truncate = (fi->flags & O_TRUNC) != 0;
    if (fs.options().read_only && ((fi->flags & O_ACCMODE) != O_RDONLY || truncate)) return EROFS;
    std::shared_ptr<CipherFile> file;
    if (int rc = OpenWithFlags(fs, inode, fi->flags, &file)) return rc;
    handle = NewFileHandle(std::move(file), fi->flags);
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(handle);
  fi->keep_cache = 1;  // every change goes through this mount, so the page cache stays valid
  fi->direct_io = handle->direct;
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
    std::shared_lock lock(fs.namespace_mutex());
    std::string backing;
    if (int rc = NewBacking(fs, dir, name, &backing)) return rc;
    std::shared_ptr<CipherFile> file;
    int rc = CreateRegular(req, dir, backing, mode, (fi->flags & O_EXCL) != 0, &file);
    if (rc != 0 && rc != EEXIST) return rc;
    if (int lrc = LookupBacking(fs, dir, backing, name, &e)) return lrc;
    Inode& inode = *reinterpret_cast<Inode*>(e.ino);
    if (file) {
      // One CipherFile per inode: someone who opened the new file between its link and here
      // (it has only its header yet) keeps theirs, and we use it too. Two objects would each
      // record their own size, and the seal of one would cut off the other's writes.
      std::lock_guard<std::mutex> open_lock(inode.open_mutex);
      std::lock_guard<std::mutex> ilock(inode.mutex);
      if (auto existing = inode.open_file.lock()) {
        file = std::move(existing);
      } else {
        fs.live_files().Remember(inode.dev, inode.ino, file);
        inode.open_file = file;
      }
    } else {
      // Created concurrently by someone else: open it.
      if (int orc = OpenWithFlags(fs, inode, fi->flags, &file)) return orc;
    }
    handle = NewFileHandle(std::move(file), fi->flags);
    return 0;
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(handle);
  fi->keep_cache = 1;
  fi->direct_io = handle->direct;
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
    return ErrnoOf(n);
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), static_cast<size_t>(n));
  }
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  ssize_t n = 0;
  int err = Guard("write", [&] {
    FileHandle& handle = GetFile(fi);
    if (handle.direct) {
      if (int rc = DropSetIdBitsBeforeWrite(req, ino, GetInode(req, ino), *handle.file)) {
        return rc;
      }
    }
    std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(buf), size);
    n = handle.append ? handle.file->Append(data)
                      : handle.file->Write(data, static_cast<uint64_t>(off));
    return ErrnoOf(n);
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  FileHandle* handle = &GetFile(fi);
  ReleaseFile(Fs(req), std::move(handle->file));
  delete handle;
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  int err = Guard("fsync", [&] { return ErrnoOf(GetFile(fi).file->Sync()); });
  fuse_reply_err(req, err);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  int err = Guard("fallocate", [&] {
    if (offset < 0 || length <= 0) return EINVAL;
    return ErrnoOf(GetFile(fi).file->Allocate(mode, static_cast<uint64_t>(offset),
                                              static_cast<uint64_t>(length)));
  });
  fuse_reply_err(req, err);
}

}  // namespace envelopefs
