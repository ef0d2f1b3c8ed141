#include "envelope_fs.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "backing_handle.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "inode_relief.h"
#include "operations.h"

namespace envelopefs {
namespace {

// An operation that changes the cipher dir, run through the write gate (held while a backup
// copies it: envelopectl quiesce).
template <auto Op>
struct Gated;
template <typename... Args, void (*Op)(fuse_req_t, Args...)>
struct Gated<Op> {
  static void Call(fuse_req_t req, Args... args) {
    WriteGate::Pass pass(static_cast<EnvelopeFs*>(fuse_req_userdata(req))->write_gate());
    Op(req, args...);
  }
};

// open(2) changes the file only with O_TRUNC.
void GatedOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_TRUNC) == 0) return OpOpen(req, ino, fi);
  Gated<OpOpen>::Call(req, ino, fi);
}

}  // namespace

void EnvelopeFs::RefreshKeyring(bool force) {
  using namespace std::chrono;
  const int64_t now = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  int64_t last = keyring_checked_ms_.load();
  if (!force && now - last < 1000) return;
  if (!keyring_checked_ms_.compare_exchange_strong(last, now) && !force) return;
  try {
    volume_->ReloadKeyringIfChanged(*damage_audit_);
  } catch (const Error& e) {
    Log(LogLevel::kError, std::string("keeping the current keyring: ") + e.what());
  }
}

EnvelopeFs::EnvelopeFs(std::unique_ptr<Volume> volume, const MountOptions& options)
    : volume_(std::move(volume)),
      damage_audit_(std::make_unique<DamageAudit>(*volume_)),
      names_(volume_->name_key(), volume_->xattr_key(), volume_->config().plaintext_names,
             volume_->config().format_version),
      options_(options) {
  // The very directory the volume was opened from (never the path again: it may have been
  // swapped since), opened for reading rather than O_PATH: it is also the `mount_fd` of
  // open_by_handle_at(2), which takes no O_PATH descriptor.
  int fd = openat(volume_->root_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowSystemError("open " + volume_->cipher_dir().string());
  root_.pinned = std::make_shared<const UniqueFd>(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) ThrowSystemError("stat " + volume_->cipher_dir().string());
  root_.dev = st.st_dev;
  root_.ino = st.st_ino;
  root_.type = S_IFDIR;
  root_.is_root = true;
  root_.nlookup = 2;
  ChooseInodeMode();
  sync_fd_.reset(open(volume_->cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!sync_fd_.valid()) ThrowSystemError("open " + volume_->cipher_dir().string());
  // A file waiting to be sealed holds a descriptor beside its inode's: a quarter of the
  // inode budget (the rest of RLIMIT_NOFILE) at most.
  const size_t max_pending = std::clamp<size_t>(DescriptorBudget() / 4, 16, 1024);
  sealer_ = std::make_unique<Sealer>(options.seal_interval_seconds, max_pending);
}

void EnvelopeFs::ChooseInodeMode() {
  std::string why_not = "disabled by ENVELOPEFS_NO_FILE_HANDLES";
  const char* off = std::getenv("ENVELOPEFS_NO_FILE_HANDLES");
  if (off == nullptr || *off == '\0' || std::string(off) == "0") {
    int mount_id = -1;
    why_not = ProbeFileHandles(root_.pinned->get(), &mount_id);
    if (why_not.empty()) {
      // A few descriptors for the inodes in use right now (a directory being filled, a file
      // stat'ed after its lookup): a sixteenth of the limit, at most 64.
      size_t cache = 64;
      rlimit lim{};
      if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
        cache = std::min<size_t>(cache, static_cast<size_t>(lim.rlim_cur) / 16);
      }
      if (const char* env = std::getenv("ENVELOPEFS_FD_CACHE")) {
        cache = static_cast<size_t>(std::strtoul(env, nullptr, 10));
      }
      inodes_.EnableHandles(root_.pinned->get(), root_.dev, mount_id, cache);
      inode_mode_ = "inodes are kept as file handles (descriptors only for open files and " +
                    std::to_string(cache) + " cached)";
      return;
    }
  }
  inode_mode_ = "inodes each hold a descriptor, at most " + std::to_string(DescriptorBudget()) +
                " cached (no file handles: " + why_not + ")";
}

EnvelopeFs::~EnvelopeFs() = default;

fuse_lowlevel_ops EnvelopeFs::Operations(const MountOptions& options) {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetAttr;
  ops.setattr = Gated<OpSetAttr>::Call;
  ops.readlink = OpReadlink;
  ops.mknod = Gated<OpMknod>::Call;
  ops.mkdir = Gated<OpMkdir>::Call;
  ops.symlink = Gated<OpSymlink>::Call;
  ops.link = Gated<OpLink>::Call;
  ops.unlink = Gated<OpUnlink>::Call;
  ops.rmdir = Gated<OpRmdir>::Call;
  ops.rename = Gated<OpRename>::Call;
  ops.open = GatedOpen;
  ops.create = Gated<OpCreate>::Call;
  ops.read = OpRead;
  ops.write = Gated<OpWrite>::Call;
  // No flush: every write already reached the backing file, so close(2) has nothing to wait
  // for. libfuse answers ENOSYS once and the kernel stops sending FLUSH (a round trip per
  // close).
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.fallocate = Gated<OpFallocate>::Call;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  if (options.xattrs) {
    ops.setxattr = Gated<OpSetxattr>::Call;
    ops.getxattr = OpGetxattr;
    ops.listxattr = OpListxattr;
    ops.removexattr = Gated<OpRemovexattr>::Call;
  }
  return ops;
}

}  // namespace envelopefs
