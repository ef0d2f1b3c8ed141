// InodeRelief — see inode_relief.h.
#include "inode_relief.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace envelopefs {

namespace {

size_t BudgetFromEnvironment() {
  if (const char* env = std::getenv("ENVELOPEFS_MAX_INODES")) {
    long v = std::strtol(env, nullptr, 10);
    if (v > 0) return static_cast<size_t>(v);
  }
  return 0;
}

// InodeTable::HoldForgotten for a scope.
class ForgottenHold {
 public:
  explicit ForgottenHold(InodeTable& table) : table_(table) { table_.HoldForgotten(); }
  ~ForgottenHold() { table_.ReleaseForgotten(); }
  ForgottenHold(const ForgottenHold&) = delete;
  ForgottenHold& operator=(const ForgottenHold&) = delete;

 private:
  InodeTable& table_;
};

}  // namespace

size_t DescriptorBudget() {
  if (size_t env = BudgetFromEnvironment()) return env;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 1 << 20;
  // The rest for open files, files waiting to be sealed (a quarter of this budget), requests in
  // flight and the daemon's own (the FUSE device, logs, the control socket, ...): 64 of them,
  // so that a low limit (256) still leaves room while the kernel's forgets lag behind.
  const size_t three_quarters = static_cast<size_t>(lim.rlim_cur) / 4 * 3;
  return three_quarters > 96 ? three_quarters - 64 : 32;
}

size_t HandleInodeBudget() {
  if (size_t env = BudgetFromEnvironment()) return env;
  return 100000;
}

InodeRelief::InodeRelief(InodeTable& inodes, size_t max_inodes)
    : inodes_(inodes),
      budget_(max_inodes != 0         ? max_inodes
              : inodes.uses_handles() ? HandleInodeBudget()
                                      : DescriptorBudget()),
      pinned_budget_(max_inodes != 0 ? max_inodes : DescriptorBudget()) {}

InodeRelief::~InodeRelief() { Stop(); }

void InodeRelief::Start(fuse_session* session) {
  session_ = session;
  inodes_.WatchSize(
      budget_,
      [this] {
        // Without the mutex (the table calls this from request threads): a wake-up lost to the
        // race is made up by the next tick.
        if (!nudged_.exchange(true)) wake_.notify_one();
      },
      pinned_budget_);
  thread_ = std::thread([this] { Run(); });
}

void InodeRelief::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return;  // never started, or already stopped: the table is not touched
  thread_.join();
  inodes_.WatchSize(SIZE_MAX, nullptr);  // the request loop has ended
}

void InodeRelief::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_ || nudged_; });
    if (stop_) break;
    nudged_ = false;
    const size_t cached = inodes_.size();
    const size_t pinned = inodes_.pinned();
    if (cached <= budget_ && pinned <= pinned_budget_) continue;
    lock.unlock();
    // Down to three quarters of the budget, so that this does not run on every tick.
    const size_t excess =
        std::max(cached > budget_ / 4 * 3 ? cached - budget_ / 4 * 3 : 0,
                 pinned > pinned_budget_ / 4 * 3 ? pinned - pinned_budget_ / 4 * 3 : 0);
    // Dropping a directory's entry can make the kernel forget it, and so its children named
    // later in this batch would name a freed parent: forgotten inodes wait until the batch is
    // sent (InodeTable::HoldForgotten).
    {
      ForgottenHold hold(inodes_);
      for (const auto& [parent, name] : inodes_.IdleEntries(excess)) {
        fuse_lowlevel_notify_inval_entry(session_, parent, name.data(), name.size());
      }
    }
    lock.lock();
  }
}

}  // namespace envelopefs
