#include "write_gate.h"

namespace envelopefs {

void WriteGate::Enter() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !held_; });
  ++inside_;
}

void WriteGate::Leave() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--inside_ == 0) changed_.notify_all();
}

bool WriteGate::Hold(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (held_) return false;
  held_ = true;
  if (!changed_.wait_for(lock, limit, [this] { return inside_ == 0; })) {
    held_ = false;
    changed_.notify_all();
    return false;
  }
  return true;
}

void WriteGate::Release() {
  std::lock_guard<std::mutex> lock(mutex_);
  held_ = false;
  changed_.notify_all();
}

}  // namespace envelopefs
