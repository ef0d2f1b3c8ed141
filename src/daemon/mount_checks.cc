// Mount checks — see mount_checks.h.
#include "mount_checks.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "envelopefs/error.h"
#include "mount_table.h"

namespace envelopefs {
namespace {

[[noreturn]] void Refuse(const std::string& message) { throw Error(ErrorKind::kUsage, message); }

// True if the directory has an entry besides "." and "..".
bool HasEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    Refuse("mount point " + dir + ": " + std::strerror(errno));
  }
  bool found = false;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

}  // namespace

bool IsAtOrBelow(const std::string& path, const std::string& dir) {
  if (path == dir) return true;
  if (dir == "/") return !path.empty() && path[0] == '/';
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

void CheckMountTargets(const std::string& cipher_dir, const std::string& mountpoint,
                       bool allow_nonempty) {
  // Paths first: they need no system call that could wait on a hung mount.
  if (mountpoint == cipher_dir) {
    Refuse("mount point " + mountpoint +
           " is the cipher dir itself; pick an empty directory "
           "outside it");
  }
  if (IsAtOrBelow(mountpoint, cipher_dir)) {
    Refuse("mount point " + mountpoint + " is inside the cipher dir " + cipher_dir +
           "; pick an empty directory outside it");
  }
  if (IsAtOrBelow(cipher_dir, mountpoint)) {
    Refuse("the cipher dir " + cipher_dir + " is inside the mount point " + mountpoint +
           ", which would hide it; pick an empty directory outside it");
  }
  if (IsMountPoint(ReadMountTable(), mountpoint)) {
    Refuse("mount point " + mountpoint +
           " is already a mount point; unmount it first or pick "
           "another directory");
  }
  struct stat ms, cs;
  if (stat(mountpoint.c_str(), &ms) != 0) {
    Refuse("mount point " + mountpoint + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(ms.st_mode)) Refuse("mount point " + mountpoint + " is not a directory");
  // The same directory under another name (a bind mount).
  if (stat(cipher_dir.c_str(), &cs) == 0 && cs.st_dev == ms.st_dev && cs.st_ino == ms.st_ino) {
    Refuse("mount point " + mountpoint +
           " is the cipher dir itself; pick an empty directory "
           "outside it");
  }
  if (!allow_nonempty && HasEntries(mountpoint)) {
    Refuse("mount point " + mountpoint +
           " is not empty (the mount would hide its files); "
           "use --nonempty (-o nonempty) to mount over them");
  }
}

}  // namespace envelopefs
