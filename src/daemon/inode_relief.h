// InodeRelief — keeps the daemon's descriptors within its limit, and its memory bounded, on very
// large trees.
//
// Without file handles (InodeTable), every inode the kernel has cached holds an O_PATH
// descriptor in the daemon, and the kernel keeps inodes cached as long as memory allows. A walk
// over a lake with more files than RLIMIT_NOFILE would otherwise make lookups fail with EMFILE.
// With file handles an inode pins no descriptor, but still costs memory. When the table grows
// past its budget (or, with handles, more inodes than the descriptor budget pin one: those on
// another mount below the cipher dir), a background thread (woken at once by the table, and every
// 200 ms) asks the kernel to drop the dentries of idle files and directories
// (fuse_lowlevel_notify_inval_entry); the kernel then sends FORGET and the descriptors close.
// Dropping a dentry is only a cache operation: a later lookup finds the entry again.
// Thread-safe; notifications are sent from its own thread, never from a request handler.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

#include "inode_table.h"

namespace envelopefs {

// How many inodes with a pinned descriptor the daemon may keep cached: three quarters of
// RLIMIT_NOFILE less 64 (for the daemon itself), or the value of ENVELOPEFS_MAX_INODES (for
// tests).
size_t DescriptorBudget();
// How many inodes the daemon keeps cached with file handles (a memory bound: about 50 MiB), or
// the value of ENVELOPEFS_MAX_INODES.
size_t HandleInodeBudget();

class InodeRelief {
 public:
  // `max_inodes`: the budget; 0 picks HandleInodeBudget() if `inodes` uses file handles, else
  // DescriptorBudget().
  InodeRelief(InodeTable& inodes, size_t max_inodes = 0);
  ~InodeRelief();  // Stop()

  void Start(fuse_session* session);
  // Before the session is unmounted or destroyed, and while the table still exists; a second
  // call does nothing.
  void Stop();
  size_t budget() const { return budget_; }

 private:
  void Run();
  InodeTable& inodes_;
  size_t budget_;
  size_t pinned_budget_;
  fuse_session* session_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::atomic<bool> nudged_{false};  // the table went over budget
  std::thread thread_;
};

}  // namespace envelopefs
