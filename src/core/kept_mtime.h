// KeptMtime — keeps a file's modification time across a header-only rewrite.
//
// Sealing a closed file and rewrapping its DEK rewrite the header but not the contents, so they
// must not change the modification time the mount shows (rsync, make, tar and restores go by
// it). Construct before the rewrite, make each of our writes through Write(), then Restore().
// A change by someone else in between (a data write through a mount) keeps its own time: Restore
// then leaves the file alone. The change time cannot be set back; Restore reports it (before and
// after) for a caller that hides it. Not thread-safe: one object per rewrite.
#pragma once

#include <sys/stat.h>

#include <optional>

namespace envelopefs {

class KeptMtime {
 public:
  explicit KeptMtime(int fd) : fd_(fd) {
    struct stat st;
    valid_ = ::fstat(fd_, &st) == 0;
    if (valid_) {
      kept_ = st.st_mtim;
      ctime_before_ = st.st_ctim;
      last_own_ = st.st_mtim;
    }
  }

  // Runs `write` (one of our own writes to the file) and returns what it returns.
  template <typename F>
  auto Write(F&& write) {
    struct stat st;
    if (!valid_ || ::fstat(fd_, &st) != 0 || !Same(st.st_mtim, last_own_)) valid_ = false;
    auto result = write();
    if (valid_ && ::fstat(fd_, &st) == 0) {
      last_own_ = st.st_mtim;
    } else {
      valid_ = false;
    }
    return result;
  }

  struct CtimeChange {
    struct timespec before, after;
  };
  // Puts the kept modification time back, unless the file changed otherwise since. Returns the
  // change time before the rewrite and now, if it put the time back.
  std::optional<CtimeChange> Restore() {
    struct stat st;
    if (!valid_ || ::fstat(fd_, &st) != 0 || !Same(st.st_mtim, last_own_)) return std::nullopt;
    const struct timespec times[2] = {{0, UTIME_OMIT}, kept_};
    if (::futimens(fd_, times) != 0 || ::fstat(fd_, &st) != 0) return std::nullopt;
    valid_ = false;
    return CtimeChange{ctime_before_, st.st_ctim};
  }

  static bool Same(const struct timespec& a, const struct timespec& b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
  }

 private:
  const int fd_;
  bool valid_ = false;
  struct timespec kept_ {};
  struct timespec ctime_before_ {};
  struct timespec last_own_ {};  // the modification time our last write left
};

}  // namespace envelopefs
