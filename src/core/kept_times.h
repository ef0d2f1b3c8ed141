// KeptTimes — keeps the times a file shows across a header-only rewrite.
//
// Sealing a closed file and rewrapping its DEK rewrite the header but not the contents, so they
// must change neither the modification time nor the change time that the mount shows (rsync,
// make, tar, borg and restores go by them). Construct before the rewrite, make each of our
// writes through Write(), then Restore(): it puts the modification time back and records the
// change time to show (ShownCtime, as the file showed it before the rewrite). A change by
// someone else in between (a data write through a mount) keeps its own times: Restore then
// leaves the file alone. Not thread-safe: one object per rewrite.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <optional>

#include "envelopefs/shown_ctime.h"

namespace envelopefs {

class KeptTimes {
 public:
  explicit KeptTimes(int fd) : fd_(fd) {
    struct stat st;
    valid_ = ::fstat(fd_, &st) == 0;
    if (valid_) {
      kept_ = st.st_mtim;
      shown_ctime_ = ReadShownCtime(fd_, st);
      last_own_ = st.st_mtim;
    }
  }

  // Runs `write` (one of our own writes to the file) and returns what it returns.
  template <typename F>
  auto Write(F&& write) {
    struct stat st;
    if (!valid_ || ::fstat(fd_, &st) != 0 || !SameTime(st.st_mtim, last_own_)) valid_ = false;
    auto result = write();
    if (valid_ && ::fstat(fd_, &st) == 0) {
      last_own_ = st.st_mtim;
    } else {
      valid_ = false;
    }
    return result;
  }

  // Puts the kept modification time back and records the change time to show, unless the file
  // changed otherwise since, or `deadline` (if given) has passed. Returns RecordShownCtime's
  // "wait until" time if it recorded one.
  std::optional<std::chrono::system_clock::time_point> Restore(
      std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt) {
    struct stat st;
    if (!valid_ || ::fstat(fd_, &st) != 0 || !SameTime(st.st_mtim, last_own_)) return std::nullopt;
    if (deadline && std::chrono::steady_clock::now() > *deadline) return std::nullopt;
    valid_ = false;
    const struct timespec times[2] = {{0, UTIME_OMIT}, kept_};
    if (::futimens(fd_, times) != 0) return std::nullopt;
    return RecordShownCtime(fd_, shown_ctime_);
  }

 private:
  const int fd_;
  bool valid_ = false;
  struct timespec kept_ {};
  struct timespec shown_ctime_ {};
  struct timespec last_own_ {};  // the modification time our last write left
};

}  // namespace envelopefs
