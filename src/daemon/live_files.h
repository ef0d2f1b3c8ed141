// LiveFiles — the CipherFile of every backing inode that is alive anywhere in the daemon (open
// through the mount, or closed and waiting in the Sealer), by (st_dev, st_ino).
//
// An Inode lives only as long as the kernel remembers it; a closed file waits in the Sealer
// for a few seconds longer. When the kernel forgets the inode in between (an unlink of another
// name, memory pressure, `echo 2 > /proc/sys/vm/drop_caches`) and looks it up again, the new
// Inode must get the same CipherFile: two objects for one file each record their own size, and
// the late seal of the old one cuts off the other's writes (the file then reads as damaged).
// A live CipherFile holds its backing file open, so no other object can have its inode number
// while it lives; Find compares numbers only while the caller, too, holds a descriptor of its
// object (a lease): two objects open at once with equal numbers are one. (A name's link count is
// no such proof: an Inode whose object was deleted behind our back, and its number given to a
// new file whose CipherFile is live, would get the new file's CipherFile.)
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "envelopefs/cipher_file.h"
#include "inode_fd.h"

namespace envelopefs {

class LiveFiles {
 public:
  // The live CipherFile of the object (dev, ino) that `held`, the caller's lease, refers to;
  // or null (also for no lease).
  std::shared_ptr<CipherFile> Find(const InodeFd& held, dev_t dev, ino_t ino);
  // Remembers `file` as the CipherFile of (dev, ino) for as long as it lives.
  void Remember(dev_t dev, ino_t ino, const std::shared_ptr<CipherFile>& file);

 private:
  std::mutex mutex_;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<CipherFile>> files_;
  size_t prune_at_ = 1024;  // sweep expired entries when the map grows past this
};

}  // namespace envelopefs
