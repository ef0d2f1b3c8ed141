// Retrying the daemon's opens that fail with EMFILE: most of the daemon's descriptors belong to
// cached inodes that InodeRelief is handing back (without file handles, inode_relief.h), and the
// kernel's FORGETs can lag behind a fast walk or a fast creator of files. So an open that fails
// with EMFILE is tried again, for up to 2 s, instead of failing the request. Two forms: an
// open(2)-like call (a descriptor, or -1 with errno), and a call into the core that throws the
// Error of a failed open (its message ends with strerror(3)'s text, ThrowSystemError).
// Thread safety: reentrant; the caller's lambda decides what it touches.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "envelopefs/error.h"

namespace envelopefs {

inline constexpr int kEmfileRetries = 100;             // 2 s in all
inline constexpr useconds_t kEmfilePause = 20 * 1000;  // between tries

// Runs `open` (one of the daemon's open(2) calls) again while it fails with EMFILE. The fd, or -1
// with errno set.
template <typename F>
int OpenRetryingOnEmfile(F&& open) {
  for (int attempt = 0;; ++attempt) {
    const int fd = open();
    if (fd >= 0 || errno != EMFILE || attempt == kEmfileRetries) return fd;
    usleep(kEmfilePause);
  }
}

// Whether `e` reports a system call of the core that failed with EMFILE.
inline bool IsOutOfDescriptors(const Error& e) {
  const std::string_view what = e.what();
  const std::string_view emfile = std::strerror(EMFILE);
  return e.kind() == ErrorKind::kIo && what.size() >= emfile.size() &&
         what.substr(what.size() - emfile.size()) == emfile;
}

// Runs `body` (a call into the core that opens files) again while it throws an Error of EMFILE;
// returns its result, or throws what it threw last.
template <typename F>
auto CallRetryingOnEmfile(F&& body) -> decltype(body()) {
  for (int attempt = 0;; ++attempt) {
    try {
      return body();
    } catch (const Error& e) {
      if (!IsOutOfDescriptors(e) || attempt == kEmfileRetries) throw;
    }
    usleep(kEmfilePause);
  }
}

}  // namespace envelopefs
