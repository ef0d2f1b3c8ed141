#include "envelopefs/cipher_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

void Walk(int dirfd, const std::filesystem::path& cipher, const std::string& relative,
          const std::string& plain, bool in_root, bool parent_ok, const NameTransform& names,
          const std::function<void(const CipherEntry&)>& visit) {
  DirIvs ivs;
  bool ivs_ok = true;
  try {
    ivs = names.ReadDirIvs(dirfd);
  } catch (const Error&) {
    ivs_ok = false;
  }
  int scan = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (scan < 0) ThrowSystemError("open " + EscapeName(cipher.string()));
  // Closed even when `visit` throws (ParallelWalk stops a walk that way).
  std::unique_ptr<DIR, int (*)(DIR*)> d(fdopendir(scan), closedir);
  if (d == nullptr) {
    close(scan);
    ThrowSystemError("opendir " + EscapeName(cipher.string()));
  }
  for (;;) {
    errno = 0;
    dirent* ent = readdir(d.get());
    if (ent == nullptr) {
      // The end, or an error: a walk that ended early would let a tool miss files (keys
      // retire would destroy a key they still use).
      if (errno != 0) ThrowSystemError("read directory " + EscapeName(cipher.string()));
      break;
    }
    std::string_view n = ent->d_name;
    if (n == "." || n == "..") continue;
    if (names.IsInternal(n, in_root)) continue;
    CipherEntry entry;
    entry.cipher_path = (cipher / std::string(n)).string();
    entry.relative = relative.empty() ? std::string(n) : relative + "/" + std::string(n);
    entry.type = ent->d_type;
    if (entry.type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd, ent->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        entry.type = static_cast<unsigned char>(IFTODT(st.st_mode));
      }
    }
    entry.name_ok = parent_ok && ivs_ok;
    if (entry.name_ok) {
      auto p = names.FromBacking(dirfd, ivs, n);
      if (p) {
        entry.plain_path = plain.empty() ? *p : plain + "/" + *p;
      } else {
        entry.name_ok = false;
      }
    }
    visit(entry);
    if (entry.type == DT_DIR) {
      int child = openat(dirfd, ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        if (errno == ENOENT) continue;  // removed since it was listed (the volume is mounted)
        // Never skipped silently (unreadable, replaced by a symlink, out of descriptors): the
        // tools' reports and keys retire's check that no file uses a key need every file.
        ThrowSystemError("open directory " + EscapeName(entry.cipher_path));
      }
      UniqueFd owned(child);
      Walk(child, entry.cipher_path, entry.relative, entry.plain_path, false, entry.name_ok, names,
           visit);
    }
  }
}

}  // namespace

void WalkCipherDir(const std::filesystem::path& cipher_dir, const NameTransform& names,
                   const std::function<void(const CipherEntry&)>& visit) {
  int fd = open(cipher_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowSystemError("open " + cipher_dir.string());
  UniqueFd owned(fd);
  Walk(fd, std::filesystem::absolute(cipher_dir), "", "", true, true, names, visit);
}

}  // namespace envelopefs
