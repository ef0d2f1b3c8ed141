// Progress — the stderr progress bar of envelopectl; see progress.h.
#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "cli.h"

namespace envelopefs::cli {

namespace {

constexpr int kBarWidth = 30;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);  // at most 10 redraws a second

// kRedrawInterval, or for tests ENVELOPEFS_TEST_PROGRESS_MS (1 to 1000) milliseconds.
std::chrono::milliseconds RedrawInterval() {
  const char* text = std::getenv("ENVELOPEFS_TEST_PROGRESS_MS");
  if (text == nullptr) return kRedrawInterval;
  const long ms = std::strtol(text, nullptr, 10);
  return ms >= 1 && ms <= 1000 ? std::chrono::milliseconds(ms) : kRedrawInterval;
}

}  // namespace

Progress::Progress(bool enabled, std::string unit, uint64_t total, uint64_t steps)
    : enabled_(enabled),
      unit_(std::move(unit)),
      total_(total),
      steps_(std::max<uint64_t>(steps, 1)),
      start_(std::chrono::steady_clock::now()) {
  if (enabled_) thread_ = std::thread([this] { Loop(); });
}

Progress::~Progress() { Finish(); }

bool Progress::WantedFor(const Args& args) {
  return !args.quiet && !args.json && isatty(STDERR_FILENO) == 1;
}

std::string Progress::Format(uint64_t done, uint64_t total, double seconds,
                             const std::string& unit) {
  std::string line = "\r";
  if (total > 0) {
    int filled = static_cast<int>(std::min(done, total) * kBarWidth / total);
    line += "[" + std::string(filled, '#') + std::string(kBarWidth - filled, ' ') + "] ";
    line += std::to_string(done) + "/" + std::to_string(total);
  } else {
    line += std::to_string(done);
  }
  uint64_t rate = seconds > 0 ? static_cast<uint64_t>(static_cast<double>(done) / seconds) : 0;
  return line + " " + unit + "  " + std::to_string(rate) + "/s";
}

void Progress::Draw() {
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = Format(done(), total_, seconds, unit_);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

void Progress::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto interval = RedrawInterval();
  while (!cv_.wait_for(lock, interval, [this] { return stop_; })) Draw();
}

void Progress::Finish() {
  if (!enabled_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::fputs("\r\033[K", stderr);  // erase the bar: the summary line follows
  std::fflush(stderr);
}

}  // namespace envelopefs::cli
