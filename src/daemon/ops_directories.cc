// FUSE operations on directory listings: opendir, readdir, readdirplus, releasedir and
// fsyncdir. Open directory handles are also registered, so that the handles the kernel never
// released (it may drop pending RELEASEDIR requests at unmount) are freed at destroy.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backing_entries.h"
#include "open_files.h"
#include "operations.h"
#include "request_context.h"

namespace envelopefs {
namespace {

struct DirEntry {
  std::string name;
  ino_t ino;
  unsigned char type;
  std::string backing;  // empty for "." and ".."
};

struct DirHandle {
  std::mutex mutex;
  std::vector<DirEntry> entries;
  bool loaded = false;
};

// Every open directory handle, owned here until RELEASEDIR or destroy.
struct DirHandles {
  std::mutex mutex;
  std::unordered_map<DirHandle*, std::unique_ptr<DirHandle>> open;
};
DirHandles& OpenDirHandles() {
  static DirHandles handles;
  return handles;
}

int LoadDir(EnvelopeFs& fs, Inode& dir, DirHandle& handle) {
  handle.entries.clear();
  DirIvs ivs;
  if (int rc = GetDirIvs(fs, dir, &ivs)) return rc;
  InodeFd dir_fd;
  if (int rc = fs.inodes().Use(dir, &dir_fd)) return rc;
  int fd = OpenRetryingOnEmfile(
      [&] { return openat(dir_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return errno;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return errno;
  }
  handle.entries.push_back({".", dir.ino, DT_DIR, ""});
  // ".." needs an inode number (readdir(3) skips entries with none). The root's parent is
  // outside the volume: as at the root of any mount, ".." is the root itself.
  struct stat parent;
  const bool parent_known =
      !dir.is_root && fstatat(dirfd(d), "..", &parent, AT_SYMLINK_NOFOLLOW) == 0;
  handle.entries.push_back({"..", parent_known ? parent.st_ino : dir.ino, DT_DIR, ""});
  while (dirent* ent = readdir(d)) {
    std::string_view n = ent->d_name;
    if (n == "." || n == ".." || fs.names().IsInternal(n, dir.is_root)) continue;
    auto plain = fs.names().FromBacking(dirfd(d), ivs, n);
    if (!plain) {
      ReportDamage(fs.damage_reporter(),
                   {FdPath(dir_fd.get(), "(unknown)") + "/" + std::string(n), std::nullopt,
                    "entry name does not authenticate; hidden from the listing"});
      continue;
    }
    handle.entries.push_back({std::move(*plain), ent->d_ino, ent->d_type, std::string(n)});
  }
  closedir(d);
  handle.loaded = true;
  return 0;
}

// Adds entry `i` of `handle` to `buf` for readdir or (`plus`) readdirplus, which also looks the
// entry up (saving the kernel a LOOKUP per entry, e.g. for ls -l). Returns the bytes used, or 0
// if it does not fit (the lookup is then undone). Entries that vanished are skipped (returns
// SIZE_MAX).
size_t AddDirEntry(fuse_req_t req, Inode& dir, const DirEntry& ent, size_t i, bool plus, char* buf,
                   size_t room) {
  if (!plus) {
    struct stat st {};
    st.st_ino = ent.ino;
    st.st_mode = static_cast<mode_t>(ent.type) << 12;
    size_t need =
        fuse_add_direntry(req, buf, room, ent.name.c_str(), &st, static_cast<off_t>(i + 1));
    return need > room ? 0 : need;
  }
  fuse_entry_param e{};
  Inode* looked_up = nullptr;
  if (ent.backing.empty()) {  // "." and "..": attributes only, no lookup
    e.attr.st_ino = ent.ino;
    e.attr.st_mode = static_cast<mode_t>(ent.type) << 12;
  } else {
    int err = Guard("readdirplus",
                    [&] { return LookupBacking(Fs(req), dir, ent.backing, ent.name, &e); });
    if (err) return SIZE_MAX;  // removed since the directory was read
    looked_up = reinterpret_cast<Inode*>(e.ino);
  }
  size_t need =
      fuse_add_direntry_plus(req, buf, room, ent.name.c_str(), &e, static_cast<off_t>(i + 1));
  if (need > room) {
    if (looked_up != nullptr) Fs(req).inodes().Forget(looked_up, 1);
    return 0;
  }
  return need;
}

void ReadDirectory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                   bool plus) {
  EnvelopeFs& fs = Fs(req);
  DirHandle& handle = *reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  int err = 0;
  {
    // Replies go out only after the handle's lock is released: once the kernel has the reply
    // it may send releasedir, which frees the handle.
    std::lock_guard<std::mutex> lock(handle.mutex);
    Inode& dir = GetInode(req, ino);
    err = Guard("readdir", [&] {
      if (off == 0 || !handle.loaded) return LoadDir(fs, dir, handle);
      return 0;
    });
    for (size_t i = static_cast<size_t>(off); err == 0 && i < handle.entries.size(); ++i) {
      size_t n = AddDirEntry(req, dir, handle.entries[i], i, plus, buf.data() + used, size - used);
      if (n == 0) break;
      if (n != SIZE_MAX) used += n;
    }
  }
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

}  // namespace

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  auto handle = std::make_unique<DirHandle>();
  fi->fh = reinterpret_cast<uint64_t>(handle.get());
  {
    DirHandles& handles = OpenDirHandles();
    std::lock_guard<std::mutex> lock(handles.mutex);
    DirHandle* key = handle.get();
    handles.open.emplace(key, std::move(handle));
  }
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirectory(req, ino, size, off, fi, /*plus=*/false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirectory(req, ino, size, off, fi, /*plus=*/true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  std::unique_ptr<DirHandle> handle;  // freed outside the lock
  {
    DirHandles& handles = OpenDirHandles();
    std::lock_guard<std::mutex> lock(handles.mutex);
    auto it = handles.open.find(reinterpret_cast<DirHandle*>(fi->fh));
    if (it != handles.open.end()) {
      handle = std::move(it->second);
      handles.open.erase(it);
    }
  }
  fuse_reply_err(req, 0);
}

void ReleaseAllDirHandles() {
  std::unordered_map<DirHandle*, std::unique_ptr<DirHandle>> left;
  {
    DirHandles& handles = OpenDirHandles();
    std::lock_guard<std::mutex> lock(handles.mutex);
    left.swap(handles.open);
  }
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  int err = Guard("fsyncdir", [&] {
    InodeFd dir_fd;
    if (int rc = Fs(req).inodes().Use(GetInode(req, ino), &dir_fd)) return rc;
    UniqueFd fd(OpenRetryingOnEmfile(
        [&] { return openat(dir_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
    if (!fd.valid()) return errno;
    return (datasync ? fdatasync(fd.get()) : fsync(fd.get())) == 0 ? 0 : errno;
  });
  fuse_reply_err(req, err);
}

}  // namespace envelopefs
