// Request plumbing shared by the FUSE operation files: the filesystem and inode a request
// names, the exception-to-errno guard, and small stat helpers. Internal to the daemon. The
// daemon's error convention is in envelope_fs.h.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <string>

#include "emfile_retry.h"
#include "envelope_fs.h"
#include "envelopefs/error.h"
#include "envelopefs/error_mapping.h"
#include "envelopefs/log.h"

namespace envelopefs {

inline EnvelopeFs& Fs(fuse_req_t req) { return *static_cast<EnvelopeFs*>(fuse_req_userdata(req)); }

inline Inode& GetInode(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return Fs(req).root();
  return *reinterpret_cast<Inode*>(ino);
}

// Runs `body`, turning exceptions from the core into errno values (ErrnoFor): a failure to
// authenticate is EIO (the core has reported it with the file), never unauthenticated data.
// Each failure is logged; a bug (kInternal) says so.
template <typename F>
int Guard(const char* op, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::exception& e) {
    Log(LogLevel::kError, std::string(op) + ": " + MessageOf(e));
    return ErrnoFor(ErrorKindOf(e));
  }
}

inline int StatFd(int fd, struct stat* st) {
  return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

}  // namespace envelopefs
