// HeaderLock — flock(LOCK_EX) on a cipher file for as long as the object lives.
//
// The daemon holds it while it rewrites a whole header (a file truncated to zero gets a fresh
// DEK), and `envelopectl rewrap` while it reads a header and writes a key slot, so that rewrap
// never writes a key slot for a DEK the file no longer uses. Not copyable; one per scope.
#pragma once

#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "envelopefs/log.h"

namespace envelopefs {

class HeaderLock {
 public:
  explicit HeaderLock(int fd) : fd_(fd) {
    int rc;
    while ((rc = ::flock(fd_, LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
      // A backing file system without flock (ENOLCK on some network file systems): the change
      // goes ahead (refusing it would refuse every truncation), but the admin is told once.
      static std::once_flag once;
      const int error = errno;
      std::call_once(once, [error] {
        Log(LogLevel::kWarning, std::string("cannot lock cipher file headers (") +
                                    std::strerror(error) +
                                    "): do not run envelopectl rewrap while the volume is mounted");
      });
    }
  }
  ~HeaderLock() { ::flock(fd_, LOCK_UN); }
  HeaderLock(const HeaderLock&) = delete;
  HeaderLock& operator=(const HeaderLock&) = delete;

 private:
  int fd_;
};

}  // namespace envelopefs
