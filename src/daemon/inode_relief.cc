// InodeRelief — see inode_relief.h.
#include "inode_relief.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>

namespace envelopefs {

namespace {

size_t DefaultBudget() {
  if (const char* env = std::getenv("ENVELOPEFS_MAX_INODES")) {
    long v = std::strtol(env, nullptr, 10);
    if (v > 0) return static_cast<size_t>(v);
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return static_cast<size_t>(lim.rlim_cur) / 4 * 3;  // the rest for open files and the daemon
}

}  // namespace

InodeRelief::InodeRelief(InodeTable& inodes, size_t max_inodes)
    : inodes_(inodes), budget_(max_inodes != 0 ? max_inodes : DefaultBudget()) {}

InodeRelief::~InodeRelief() { Stop(); }

void InodeRelief::Start(fuse_session* session) {
  session_ = session;
  thread_ = std::thread([this] { Run(); });
}

void InodeRelief::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void InodeRelief::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; })) {
    const size_t cached = inodes_.size();
    if (cached <= budget_) continue;
    lock.unlock();
    // Down to three quarters of the budget, so that this does not run on every tick.
    for (const auto& [parent, name] : inodes_.IdleEntries(cached - budget_ / 4 * 3)) {
      fuse_lowlevel_notify_inval_entry(session_, parent, name.data(), name.size());
    }
    lock.lock();
  }
}

}  // namespace envelopefs
