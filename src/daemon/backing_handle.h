// BackingHandle — a backing object's file handle (name_to_handle_at(2)), kept inline in its
// Inode so that a cached inode pins no descriptor; opened again on demand (open_by_handle_at,
// which needs CAP_DAC_READ_SEARCH). The only place in the daemon that knows the handle's bytes.
//
// Safety: open_by_handle_at takes the cipher dir's descriptor only as `mount_fd`, to name its
// file system; a handle may name any inode of that file system, also outside the cipher dir if
// the cipher dir is not the root of its file system. So a handle is only ever made here, from
// a descriptor the daemon reached beneath the cipher dir (openat of a name in a directory it
// already holds) and never read from anywhere else: the cipher dir cannot forge one. Renames
// behind our back keep a handle valid, as they kept the O_PATH descriptor it replaces (that
// one, too, followed an object moved elsewhere on the same file system); a deleted object's
// handle opens as ESTALE. Handles of objects on another mount below the cipher dir are not
// made (MakeHandle fails): their inodes keep a descriptor.
// Thread safety: a BackingHandle is immutable once made; the functions are reentrant.
#pragma once

#include <cstdint>
#include <string>

namespace envelopefs {

class BackingHandle {
 public:
  // Longer handles (e.g. of some stacked file systems) are not kept: that inode pins a
  // descriptor instead. ext4, XFS, btrfs and tmpfs handles are 8 to 24 bytes.
  static constexpr unsigned kMaxBytes = 40;

  bool valid() const { return size_ != 0; }
  // The handle of the object `fd` refers to, if its file system has handles for it and it is on
  // mount `mount_id` (the cipher dir's). False otherwise (the handle is left unset).
  bool Make(int fd, int mount_id);
  // An O_PATH descriptor of the object, through the cipher dir's descriptor `mount_fd`; -1 with
  // errno set (ESTALE: the object was deleted).
  int Open(int mount_fd) const;
  // Whether both name the same object. A handle carries the inode number and its generation, so
  // an object made later under a deleted one's inode number has another handle.
  bool operator==(const BackingHandle& other) const;
  bool operator!=(const BackingHandle& other) const { return !(*this == other); }

 private:
  int32_t type_ = 0;
  uint8_t size_ = 0;
  uint8_t bytes_[kMaxBytes];
};

// Empty if file handles work for the tree of the directory `root_fd` (the cipher dir): its
// handle can be made and opened again, and names the same directory; else why not. `mount_id`
// receives the id handles of the tree must carry.
std::string ProbeFileHandles(int root_fd, int* mount_id);

}  // namespace envelopefs
