// Progress — a one-line progress bar on stderr for long envelopectl runs (rewrap, verify, audit).
//
// Drawn only when enabled (stderr is a terminal and neither --quiet nor --json was given), by a
// background thread at most ten times a second:
//   "\r[#####     ] 12345/100000 files  3456/s"
// Add() is a relaxed atomic increment, so worker threads may call it per file at no cost.
// The line is erased when the Progress is destroyed (or Finish() is called), so the summary line
// that follows starts on a clean line. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace envelopefs::cli {

struct Args;

class Progress {
 public:
  // `unit` names what is counted ("files"); `total` 0 means unknown (no bar, just the count).
  // `steps` is how many Add()s make one unit (e.g. 2 when each file is done in two halves, so
  // that the bar moves at every half).
  Progress(bool enabled, std::string unit, uint64_t total, uint64_t steps = 1);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Whether a bar belongs on stderr for these options: a terminal, and not --quiet / --json.
  static bool WantedFor(const Args& args);

  void Add(uint64_t n = 1) { done_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t done() const { return done_.load(std::memory_order_relaxed) / steps_; }
  // What to print before a message on stderr while the bar may be drawn: "\r\033[K" (erase
  // the bar's line; it is redrawn at the next tick) when enabled, else "".
  const char* LineEraser() const { return enabled_ ? "\r\033[K" : ""; }
  // Stops redrawing and erases the line. Idempotent.
  void Finish();

  // The line for `done` of `total` after `seconds` (public for tests and reuse).
  static std::string Format(uint64_t done, uint64_t total, double seconds, const std::string& unit);

 private:
  void Loop();
  void Draw();

  const bool enabled_;
  const std::string unit_;
  const uint64_t total_;
  const uint64_t steps_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace envelopefs::cli
