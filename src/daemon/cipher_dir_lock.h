// CipherDirLock — one daemon per cipher dir.
//
// Takes flock(2) (exclusive, non-blocking) on a descriptor of the cipher dir's root directory
// and holds it for as long as the object lives (the daemon's lifetime); no file is created in
// the cipher dir. A second daemon on the same directory (under any path) is refused with
// Error(kState) naming the mount of the first one, found in /proc/self/mountinfo (envelopefs
// mounts have the cipher dir as their source and type fuse.envelopefs). A locked cipher dir
// without such a mount (a daemon that is starting, or still recording file sizes after its
// unmount) is waited for, up to 10 s. A file system that
// cannot lock directories gets a warning, and the mount goes ahead unlocked. envelopectl does
// not take this lock: its key commands are safe next to a mounted volume. Not thread-safe
// (owned by main).
#pragma once

#include <string>

#include "envelopefs/unique_fd.h"

namespace envelopefs {

class CipherDirLock {
 public:
  // Locks `cipher_dir` (absolute, resolved). Throws Error(kState) if another daemon holds it,
  // Error(kIo) if the directory cannot be opened.
  explicit CipherDirLock(const std::string& cipher_dir);

 private:
  UniqueFd fd_;  // closing it releases the lock
};

// Where the envelopefs mount of `cipher_dir` is, from /proc/self/mountinfo; empty if none.
std::string FindEnvelopeMount(const std::string& cipher_dir);

}  // namespace envelopefs
