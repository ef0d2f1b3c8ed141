// Opening paths inside the cipher dir without ever leaving it.
//
// The cipher dir is hostile: any directory in it may be replaced by a symlink between the moment
// a walk saw it and the moment a tool opens a path through it. These helpers resolve a path
// relative to a directory descriptor one component at a time, each with O_NOFOLLOW, so no symlink
// (and no ".." or absolute component) is ever followed. Thread-safe (no shared state).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace envelopefs {

// The /proc/self/fd path of `fd`: how path-only calls reach the object of an O_PATH descriptor
// (the magic link names exactly that inode, whatever its name points to by now).
inline std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The current path of `fd` (for log lines), or `fallback` if the kernel cannot tell.
std::string FdPath(int fd, const std::string& fallback);

// Opens `relative` (components separated by '/', none of them "", "." or "..") below the
// directory `root_fd` with `flags` (O_NOFOLLOW and O_CLOEXEC are always added; `mode` for
// O_CREAT). Every intermediate component must be a real directory. Returns the fd or -errno
// (-ELOOP when a component is a symlink, -EINVAL for a malformed path).
int OpenBeneath(int root_fd, std::string_view relative, int flags, mode_t mode = 0);

// Opens the directory that holds the last component of `relative` (O_PATH | O_DIRECTORY) and
// returns its fd or -errno; `*leaf` receives the last component.
int OpenParentBeneath(int root_fd, std::string_view relative, std::string_view* leaf);

// Opens `name` in `dirfd` with `flags` (O_RDONLY, O_RDWR, O_APPEND...) only if it is a regular
// file (with exactly one link when `single_link`), never opening anything else: the object is
// first opened O_PATH (which opens no device and blocks on no FIFO) and checked, then reopened
// through /proc/self/fd. When it does not exist and `create`, it is created (O_EXCL, `mode`).
// Returns the fd, or -errno (-EINVAL: not a regular file; -EMLINK: more than one link).
int OpenRegularFileAt(int dirfd, const std::string& name, int flags, bool create = false,
                      mode_t mode = 0600, bool single_link = false);

// OpenParentBeneath, then OpenRegularFileAt: opens the regular file `relative` below `root_fd`
// with `flags`, never following a symlink and never opening (or blocking on) anything but a
// regular file. How the tools and rewrap open cipher files. Returns the fd or -errno.
int OpenRegularBeneath(int root_fd, std::string_view relative, int flags);

}  // namespace envelopefs
