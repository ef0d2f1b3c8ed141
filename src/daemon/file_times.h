// File times as the mount shows them. A seal (a header-only rewrite after the last close, see
// Sealer) or a rewrap keeps a file's modification time and records the change time to show
// (shown_ctime.h); attributes show that one for as long as nothing else changed the file.
// Thread-safe: the inode's cached parts are taken under Inode::mutex, never across the xattr
// read.
#pragma once

#include <sys/stat.h>

#include "inode_table.h"

namespace envelopefs {

// Replaces in `st` (the backing attributes of a regular file, read from `fd`) the change time
// by the one to show. `inode` (may be null) remembers it per backing change time.
void ShowCtime(Inode* inode, int fd, struct stat& st);

// utimensat(2) of `inode` (`fd`: a descriptor of it) with `times` (as for futimens): through its
// open file when it has one, so that a seal in progress does not put back the modification time
// it found. 0 or an errno.
int SetFileTimes(Inode& inode, int fd, const struct timespec times[2]);

}  // namespace envelopefs
