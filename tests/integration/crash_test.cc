// Crash injection: the daemon is SIGKILLed in the middle of writes, appends, renames, truncates
// and seals, over seeded rounds; after each, a remount finds every fsynced file exactly as it
// was at its fsync, and every file opens.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

// Writes files until the mount goes away: some written and fsynced once (remembered in `synced`
// and never touched again), others rewritten, appended to, truncated and renamed.
void Churn(const fs::path& root, uint32_t seed, std::map<std::string, std::string>* synced,
           std::mutex* mu) {
  std::mt19937 rng(seed);
  for (int i = 0;; ++i) {
    const std::string name = "s" + std::to_string(seed) + "-" + std::to_string(i);
    switch (rng() % 4) {
      case 0: {  // written and fsynced: must survive exactly
        const std::string data = RandomString(1 + rng() % 100000, rng());
        int fd = open((root / name).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
        if (fd < 0) return;
        const bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                        fsync(fd) == 0;
        close(fd);
        if (!ok) return;
        std::lock_guard<std::mutex> lock(*mu);
        (*synced)[name] = data;
        break;
      }
      case 1: {  // appends to a log
        int fd = open((root / "log").c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
        if (fd < 0) return;
        const std::string line = RandomString(1 + rng() % 5000, rng());
        const bool ok = write(fd, line.data(), line.size()) >= 0;
        close(fd);
        if (!ok) return;
        break;
      }
      case 2: {  // rewrite, truncate and rename a scratch file
        const fs::path scratch = root / ("scratch" + std::to_string(rng() % 5));
        int fd = open(scratch.c_str(), O_CREAT | O_RDWR, 0644);
        if (fd < 0) return;
        const std::string data = RandomString(1 + rng() % 70000, rng());
        bool ok = pwrite(fd, data.data(), data.size(), rng() % 50000) >= 0 &&
                  ftruncate(fd, rng() % 60000) == 0;
        close(fd);
        std::error_code ec;
        fs::rename(scratch, root / ("moved" + std::to_string(rng() % 5)), ec);
        if (!ok) return;
        break;
      }
      default:  // let seals run in between
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
    }
  }
}

TEST(Crash, KilledDaemonLosesNoFsyncedFileAndEveryFileOpens) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  std::map<std::string, std::string> synced;
  std::mutex mu;
  std::mt19937 rng(20261124);
  for (uint32_t round = 0; round < 6; ++round) {
    fs::create_directories(v / ("r" + std::to_string(round)));
    std::thread writers[2];
    for (uint32_t t = 0; t < 2; ++t) {
      writers[t] =
          std::thread(Churn, v / ("r" + std::to_string(round)), round * 10 + t, &synced, &mu);
    }
    // Past the seal interval (1 s) now and then, so that some kills hit a seal.
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1500));
    EXPECT_EQ(128 + SIGKILL, v.Stop(SIGKILL)) << "round " << round;
    for (auto& w : writers) w.join();  // their calls fail once the daemon is gone
    v.Unmount();                       // the dead mount
    v.Mount();
    ASSERT_MOUNTED(v) << "round " << round;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [name, data] : synced) {
      const fs::path dir = v / ("r" + std::to_string(std::stoi(name.substr(1)) / 10));
      EXPECT_EQ(data, ReadFile(dir / name)) << "round " << round << ": " << name;
    }
    for (const fs::path& f : FilesBelow(v.mnt())) {
      int fd = open(f.c_str(), O_RDONLY);
      EXPECT_GE(fd, 0) << "round " << round << ": " << f
                       << " does not open: " << std::strerror(errno) << "\n"
                       << v.DaemonLog();
      if (fd >= 0) close(fd);
    }
  }
  EXPECT_GT(synced.size(), 6u);
}

}  // namespace
}  // namespace envelopefs::testing
