// MountTable — the mounts this process sees, read from /proc/self/mountinfo.
//
// Used to refuse a mount point that is already mounted on, to name the mount of a cipher dir
// that another daemon serves, and to find our own mount's device number. Reading the table
// never stat(2)s a mount point (a stat of a hung FUSE mount would hang). Paths are unescaped
// (the kernel writes space, tab, newline and backslash as \040, \011, \012 and \134).
// Stateless functions; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace envelopefs {

struct MountEntry {
  std::string device;       // "major:minor"
  std::string root;         // the root of the mount within its file system
  std::string mount_point;  // absolute path
  std::string fs_type;      // e.g. "ext4", "fuse.envelopefs"
  std::string source;       // e.g. "/dev/sda1"; for envelopefs, the cipher dir
};

// The mounts of /proc/self/mountinfo, oldest first; empty if it cannot be read.
std::vector<MountEntry> ReadMountTable();

// Parses one line of mountinfo; false if it is not one.
bool ParseMountInfoLine(const std::string& line, MountEntry* entry);

// True if `path` (absolute, resolved) is the mount point of some mount in `table`.
bool IsMountPoint(const std::vector<MountEntry>& table, const std::string& path);

}  // namespace envelopefs
