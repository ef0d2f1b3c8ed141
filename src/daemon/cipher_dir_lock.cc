// CipherDirLock — see cipher_dir_lock.h.
#include "cipher_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "mount_table.h"

namespace envelopefs {
namespace {

constexpr int kWaitMs = 10000;  // for a daemon that is stopping
constexpr int kPollMs = 100;

}  // namespace

std::string FindEnvelopeMount(const std::string& cipher_dir) {
  struct stat want;
  const bool have_want = stat(cipher_dir.c_str(), &want) == 0;
  std::string found;
  for (const MountEntry& m : ReadMountTable()) {
    if (m.fs_type != "fuse.envelopefs") continue;
    bool same = m.source == cipher_dir;
    // The same directory under another path (a symlink or bind mount): compare the inodes.
    struct stat st;
    if (!same && have_want && !m.source.empty() && m.source[0] == '/' &&
        stat(m.source.c_str(), &st) == 0) {
      same = st.st_dev == want.st_dev && st.st_ino == want.st_ino;
    }
    if (same) found = m.mount_point;  // the last match is the newest mount
  }
  return found;
}

CipherDirLock::CipherDirLock(const std::string& cipher_dir) {
  fd_.reset(open(cipher_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_.valid()) ThrowSystemError("cipher dir " + cipher_dir);
  // A daemon whose volume was just unmounted still holds the lock while it records the last
  // files' sizes: wait for it, unless its mount is still there.
  for (int waited_ms = 0;; waited_ms += kPollMs) {
    int rc;
    while ((rc = flock(fd_.get(), LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc == 0) return;
    if (errno != EWOULDBLOCK) {
      Log(LogLevel::kWarning, "cannot lock the cipher dir " + cipher_dir + " (" +
                                  std::strerror(errno) +
                                  "); a second daemon on it would not be refused");
      fd_.reset();
      return;
    }
    const std::string other = FindEnvelopeMount(cipher_dir);
    if (!other.empty()) {
      throw Error(ErrorKind::kState, "cipher dir " + cipher_dir + " is already mounted at " +
                                         other +
                                         " by another envelopefs daemon; unmount it first "
                                         "(fusermount3 -u " +
                                         other + ")");
    }
    if (waited_ms >= kWaitMs) {
      throw Error(ErrorKind::kState, "cipher dir " + cipher_dir +
                                         " is in use by another envelopefs daemon (still "
                                         "starting or stopping, or mounted in another mount "
                                         "namespace)");
    }
    usleep(kPollMs * 1000);
  }
}

}  // namespace envelopefs
