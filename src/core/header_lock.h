// HeaderLock — flock(LOCK_EX) on a cipher file for as long as the object lives.
//
// The daemon holds it while it rewrites a whole header (a file truncated to zero gets a fresh
// DEK), and `envelopectl rewrap` while it reads a header and writes a key slot, so that rewrap
// never writes a key slot for a DEK the file no longer uses. Not copyable; one per scope.
#pragma once

#include <sys/file.h>

#include <cerrno>

namespace envelopefs {

class HeaderLock {
 public:
  explicit HeaderLock(int fd) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~HeaderLock() { ::flock(fd_, LOCK_UN); }
  HeaderLock(const HeaderLock&) = delete;
  HeaderLock& operator=(const HeaderLock&) = delete;

 private:
  int fd_;
};

}  // namespace envelopefs
