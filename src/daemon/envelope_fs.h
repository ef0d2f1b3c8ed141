// EnvelopeFs — the FUSE low-level operations of the envelopefs daemon.
//
// Translates FUSE requests into operations on the cipher dir: names through NameTransform,
// file contents through CipherFile, everything else (modes, owners, times, links) passed
// through to the backing objects. It never touches byte layouts itself. One instance per
// mount; callbacks run on libfuse's worker threads and are thread-safe.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"
#include "inode_table.h"
#include "sealer.h"

namespace envelopefs {

struct MountOptions {
  bool read_only = false;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  int seal_interval_seconds = 2;
};

class EnvelopeFs {
 public:
  EnvelopeFs(std::unique_ptr<Volume> volume, const MountOptions& options);
  ~EnvelopeFs();

  static const fuse_lowlevel_ops& Operations();

  Volume& volume() { return *volume_; }
  const NameTransform& names() const { return names_; }
  const MountOptions& options() const { return options_; }
  Inode& root() { return root_; }
  InodeTable& inodes() { return inodes_; }
  Sealer& sealer() { return *sealer_; }

  // Picks up a keyring changed by `envelopectl keys rotate` (or retire) without a remount.
  // `force`: check now (a file needs a KEK version we do not know yet); otherwise at most
  // once per second, so creating many files costs one stat(2) per second. Never throws: a
  // keyring that does not load is logged and the current one kept.
  void RefreshKeyring(bool force);

 private:
  std::unique_ptr<Volume> volume_;
  NameTransform names_;
  MountOptions options_;
  Inode root_;
  InodeTable inodes_;
  UniqueFd sync_fd_;  // the cipher dir, opened for syncfs(2)
  std::unique_ptr<Sealer> sealer_;
  std::atomic<int64_t> keyring_checked_ms_{0};
};

}  // namespace envelopefs
