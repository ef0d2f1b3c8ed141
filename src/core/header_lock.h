// HeaderLock — flock(LOCK_EX) on a cipher file (or the audit log) for as long as it lives.
//
// The daemon holds it while it rewrites a whole header (a file truncated to zero gets a fresh
// DEK) and while it unseals a sealed file before changing it; `envelopectl rewrap` while it
// reads a header and writes a key slot, so that rewrap never writes a key slot for a DEK the
// file no longer uses, and keeps a file's times only if no write began meanwhile. Holders keep
// it for a few system calls and at most one file's fdatasync, never across a syncfs, and never
// take a second one while holding it.
//
// Anyone who can open a cipher file can flock it, so the wait is bounded: after `patience`
// state() is kBusy and nothing is held; the caller decides (the daemon goes ahead, rewrap
// leaves the file). Not copyable; one per scope; not thread-safe.
#pragma once

#include <sys/file.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>

#include "envelopefs/log.h"

namespace envelopefs {

class HeaderLock {
 public:
  enum class State {
    kHeld,
    kUnsupported,  // the backing file system has no flock (ENOLCK): nothing is held
    kBusy,         // someone else held it for longer than the patience: nothing is held
  };
  static constexpr std::chrono::milliseconds kDefaultPatience{5000};

  explicit HeaderLock(int fd, std::chrono::milliseconds patience = kDefaultPatience) : fd_(fd) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    long pause_ns = 1000000;  // 1 ms, doubling to 64 ms
    for (;;) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        state_ = State::kHeld;
        acquired_at_ = std::chrono::steady_clock::now();
        return;
      }
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        state_ = State::kBusy;
        acquired_at_ = std::chrono::steady_clock::now();
        return;
      }
      const struct timespec pause = {0, pause_ns};
      ::nanosleep(&pause, nullptr);
      pause_ns = std::min(pause_ns * 2, 64000000L);
    }
    // A backing file system without flock (ENOLCK on some network file systems): the change
    // goes ahead (refusing it would refuse every truncation), but the admin is told once.
    state_ = State::kUnsupported;
    static std::once_flag once;
    const int error = errno;
    std::call_once(once, [error] {
      Log(LogLevel::kWarning, std::string("cannot lock cipher file headers (") +
                                  std::strerror(error) +
                                  "): do not run envelopectl rewrap while the volume is mounted");
    });
  }
  ~HeaderLock() {
    if (state_ == State::kHeld) ::flock(fd_, LOCK_UN);
  }
  HeaderLock(const HeaderLock&) = delete;
  HeaderLock& operator=(const HeaderLock&) = delete;

  // When the lock was taken (when the wait ended, if it was not).
  std::chrono::steady_clock::time_point acquired_at() const { return acquired_at_; }
  bool busy() const { return state_ == State::kBusy; }
  // For a daemon that goes ahead anyway: one log line naming `file` when the lock was busy.
  void WarnIfBusy(const std::string& file) const {
    if (busy()) {
      Log(LogLevel::kWarning,
          file + ": another process holds the header lock; going ahead without it");
    }
  }

 private:
  int fd_;
  State state_ = State::kUnsupported;
  std::chrono::steady_clock::time_point acquired_at_ = std::chrono::steady_clock::now();
};

}  // namespace envelopefs
