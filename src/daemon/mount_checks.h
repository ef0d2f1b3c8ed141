// Mount checks — what envelopefs verifies before it mounts, as gocryptfs does.
//
// CheckMountTargets refuses (Error(kUsage), one line naming the path): a mount point that is not
// a directory; the cipher dir itself, or a directory inside it, as the mount point; a mount
// point that contains the cipher dir (the mount would hide it); a mount point that is already
// a mount point (stacking); a non-empty mount point unless `allow_nonempty` (its files would
// be hidden). Both paths must already be resolved with realpath(3). Nothing is changed on
// disk. Stateless; thread-safe.
#pragma once

#include <string>

namespace envelopefs {

void CheckMountTargets(const std::string& cipher_dir, const std::string& mountpoint,
                       bool allow_nonempty);

// True if `path` is `dir` or below it (both absolute and resolved).
bool IsAtOrBelow(const std::string& path, const std::string& dir);

}  // namespace envelopefs
