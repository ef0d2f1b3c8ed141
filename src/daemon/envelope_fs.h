// EnvelopeFs — the state of one envelopefs mount, shared by the FUSE operations.
//
// Translates FUSE requests into operations on the cipher dir: names through NameTransform,
// file contents through CipherFile, everything else (modes, owners, times, links) passed
// through to the backing objects. It never touches byte layouts itself. One instance per
// mount; the operations (operations.h, one file per group) run on libfuse's worker threads.
//
// Error convention of the daemon (src/daemon): every FUSE operation replies 0 or a positive
// errno (fuse_reply_err), never unauthenticated data; its helpers return 0 or a positive errno.
// A core result (-errno) becomes one through ErrnoOf, an exception from the core through Guard
// (request_context.h, using ErrnoFor): the mapping is in error_mapping.h, nowhere else. Damage
// found while serving is reported to damage_reporter() (logged and audited). Before it serves,
// main.cc exits with ExitCodeFor(kind) on failure.
//
// Thread safety and lock order. Locks are taken in this order, never the other way round:
//   1. EnvelopeFs::namespace_mutex()  shared to create or remove an entry, exclusive for rmdir
//                                     and rename (a directory is never removed while an entry
//                                     is created in it)
//   2. Inode::open_mutex              one open of a cipher file at a time per inode (held
//                                     across the header read and key unwrap)
//   3. InodeTable's mutex             (IdleEntries takes Inode::mutex inside it, Forget the
//                                     FdCache's mutex, which is never held across anything)
//   4. Inode::mutex                   an inode's cached parts; never held across disk I/O or a
//                                     key unwrap, so lookups and getattr never wait for one
//   5. CipherFile's lock              (held by reads, writes and seals)
// Directory handles have their own mutex, taken before any of 2-5. The Sealer's and
// InodeRelief's mutexes guard only their own queues.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>

#include "damage_audit.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"
#include "inode_table.h"
#include "live_files.h"
#include "sealer.h"
#include "write_gate.h"

namespace envelopefs {

struct MountOptions {
  bool read_only = false;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  int seal_interval_seconds = 2;
  // Extended attributes through the mount (--noxattr turns them off). Without them the daemon
  // has no xattr handlers: libfuse answers ENOSYS, the kernel stops asking (EOPNOTSUPP to the
  // caller), and so sends no GETXATTR of security.capability before each write, nor for the
  // probes of ls -l.
  bool xattrs = true;
};

class EnvelopeFs {
 public:
  EnvelopeFs(std::unique_ptr<Volume> volume, const MountOptions& options);
  ~EnvelopeFs();

  // The request handlers for a mount with `options`.
  static fuse_lowlevel_ops Operations(const MountOptions& options);

  Volume& volume() { return *volume_; }
  const NameTransform& names() const { return names_; }
  const MountOptions& options() const { return options_; }
  Inode& root() { return root_; }
  InodeTable& inodes() { return inodes_; }
  Sealer& sealer() { return *sealer_; }
  LiveFiles& live_files() { return live_files_; }
  std::shared_mutex& namespace_mutex() { return namespace_mutex_; }
  WriteGate& write_gate() { return write_gate_; }

  // For a consistent backup of the cipher dir (quiesce.cc): holds every change through the mount
  // (waiting up to `limit` for those in progress), seals every changed file, open or closed,
  // and syncs the backing file system. 0, or an errno with nothing held.
  int Quiesce(std::chrono::milliseconds limit);
  // Seals every changed file: closed ones waiting in the Sealer and open ones (also those whose
  // release the kernel had not sent when the session ended). 0 or the first errno.
  int SealAll();
  void Unquiesce();
  // Where damage found while serving requests is reported: logged and audited (DamageAudit).
  DamageReporter& damage_reporter() { return *damage_audit_; }

  // Picks up a keyring changed by `envelopectl keys rotate` (or retire) without a remount.
  // `force`: check now (a file needs a KEK version we do not know yet); otherwise at most
  // once per second, so creating many files costs one stat(2) per second. Never throws: a
  // keyring that does not load is logged and the current one kept.
  void RefreshKeyring(bool force);

  // How inodes reach their backing objects (file handles or a descriptor each) and why: one
  // line, logged at mount.
  const std::string& inode_mode() const { return inode_mode_; }

  // The FUSE session, for notifications to the kernel from request handlers; set once, before
  // the session serves requests.
  void set_session(fuse_session* session) { session_ = session; }
  fuse_session* session() const { return session_; }

 private:
  // Uses file handles for inodes (InodeTable::EnableHandles) unless ENVELOPEFS_NO_FILE_HANDLES
  // is set or the probe fails (not root, or a backing file system without them); sets
  // inode_mode_.
  void ChooseInodeMode();

  std::unique_ptr<Volume> volume_;
  std::unique_ptr<DamageAudit> damage_audit_;  // after volume_: outlives every open file
  NameTransform names_;
  MountOptions options_;
  Inode root_;
  InodeTable inodes_;
  LiveFiles live_files_;
  UniqueFd sync_fd_;  // the cipher dir, opened for syncfs(2)
  std::unique_ptr<Sealer> sealer_;
  std::string inode_mode_;
  std::atomic<int64_t> keyring_checked_ms_{0};
  std::shared_mutex namespace_mutex_;
  WriteGate write_gate_;
  fuse_session* session_ = nullptr;
};

}  // namespace envelopefs
