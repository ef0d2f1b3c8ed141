// File times as the mount shows them: a seal (a header-only rewrite after the last close, see
// Sealer) keeps a file's modification time, but the backing file's change time cannot be set
// back. SealedCtime remembers, per inode, the change time our last seal left and the one it
// replaced; attributes show the replaced one for as long as nothing else changed the file.
// (Kept in memory: after a remount a sealed file shows its seal time as its change time.)
// Thread-safe: SealedCtime has its own mutex, because the seal observer runs under the file's
// lock, which is taken inside Inode::mutex elsewhere.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <mutex>

#include "inode_table.h"

namespace envelopefs {

struct SealedCtime {
  std::mutex mutex;
  bool set = false;
  struct timespec left {};   // the backing change time after our seal
  struct timespec shown {};  // the change time before it
};

// Makes seals of `file` (the open file of `inode`) recorded in the inode. Requires
// inode.mutex held, and `file` not yet shared.
void WatchSeals(Inode& inode, CipherFile& file);

// Replaces in `st` (the backing attributes of `inode`, a regular file) a change time that only
// our own seal caused. Requires inode.mutex held.
void HideSealCtime(const Inode& inode, struct stat& st);

// utimensat(2) of `inode` with `times` (as for futimens): through its open file when it has one,
// so that a seal in progress does not put back the modification time it found. 0 or an errno.
int SetFileTimes(Inode& inode, const struct timespec times[2]);

}  // namespace envelopefs
