// WriteGate — lets the changes made through the mount be held while a backup copies the cipher
// dir (envelopectl quiesce).
//
// Every FUSE operation that changes the cipher dir passes the gate (a Pass for its whole run;
// the op table wraps them, envelope_fs.cc). Hold() closes the gate and waits until no change is
// in progress; changes then wait at the gate until Release(). Reads never pass it. A Pass is
// never taken inside another (that would deadlock against Hold). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace envelopefs {

class WriteGate {
 public:
  class Pass {
   public:
    explicit Pass(WriteGate& gate) : gate_(gate) { gate_.Enter(); }
    ~Pass() { gate_.Leave(); }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

   private:
    WriteGate& gate_;
  };

  // Closes the gate and waits up to `limit` for the changes in progress to finish. False (and
  // the gate open again) if it is already held or they did not finish in time.
  bool Hold(std::chrono::milliseconds limit);
  void Release();

 private:
  void Enter();
  void Leave();

  std::mutex mutex_;
  std::condition_variable changed_;
  int inside_ = 0;
  bool held_ = false;
};

}  // namespace envelopefs
