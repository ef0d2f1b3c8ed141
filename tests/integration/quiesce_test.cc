// envelopectl quiesce: a backup of a cipher dir in use is consistent. While the command runs,
// changes through the mount wait and reads go on; every file of the copy verifies, open ones
// included; the command's exit status is passed on; a hold that expires is an error.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

const std::string kCtl = ENVELOPECTL_BINARY;

std::string Quiesce(const MountedVolume& v, const std::string& options, const std::string& cmd) {
  return kCtl + " quiesce " + options + " " + Quote(v.cipher().string()) + " -- " + cmd;
}

// Writers that keep changing files (appends, rewrites, new files, renames) until stopped, some
// holding files open across the backup.
class WriteLoad {
 public:
  explicit WriteLoad(const fs::path& root) {
    fs::create_directories(root / "load");
    for (int t = 0; t < 3; ++t) {
      threads_.emplace_back([this, root, t] {
        const fs::path dir = root / "load";
        const fs::path log = dir / ("log" + std::to_string(t));
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);  // open throughout
        for (int i = 0; !stop_; ++i) {
          const std::string line = RandomString(50 + i % 4000, i * 7 + t);
          if (write(fd, line.data(), line.size()) < 0) break;
          const fs::path f = dir / ("f" + std::to_string(t) + "-" + std::to_string(i % 20));
          WriteFile(f, RandomString(1 + (i * 977) % 70000, i));
          std::error_code ec;
          fs::rename(f, dir / ("r" + std::to_string(t) + "-" + std::to_string(i % 7)), ec);
          ++changes_;
        }
        close(fd);
      });
    }
    while (changes_ < 30) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~WriteLoad() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  long changes() const { return changes_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> changes_{0};
  std::vector<std::thread> threads_;
};

TEST(Quiesce, ACopyTakenUnderWriteLoadVerifies) {
  TempDir t;
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const std::string copy = (t.path() / "copy").string();
  WriteLoad load(v.mnt());
  CommandResult backup = RunCommand(
      Quiesce(v, "", "rsync -a " + Quote(v.cipher().string()) + "/ " + Quote(copy) + "/"), 120);
  const long during = load.changes();
  ASSERT_EQ(0, backup.exit_code) << backup.output;
  EXPECT_TRUE(Contains(backup.output, "held")) << backup.output;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_GT(load.changes(), during) << "changes did not resume after the backup";
  load.Stop();
  CommandResult verify =
      RunCommand(kCtl + " verify --keyfile " + Quote(v.keyfile().string()) + " " + Quote(copy));
  EXPECT_EQ(0, verify.exit_code) << verify.output;
  EXPECT_TRUE(Contains(v.DaemonLog(), "changes held for a backup")) << v.DaemonLog();
}

TEST(Quiesce, ChangesWaitWhileHeldAndReadsGoOn) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "before");
  // The hold lasts as long as the command; a marker file says when it started.
  const fs::path started = v.cipher().parent_path() / "hold-started";
  std::thread hold([&] {
    CommandResult r =
        RunCommand(Quiesce(v, "", "sh -c 'touch " + Quote(started.string()) + "; sleep 2'"));
    EXPECT_EQ(0, r.exit_code) << r.output;
  });
  while (!fs::exists(started)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ("before", ReadFile(v / "f"));  // a read goes on
  const auto read_done = std::chrono::steady_clock::now();
  WriteFile(v / "f", "after");  // waits for the release
  const auto write_done = std::chrono::steady_clock::now();
  hold.join();
  EXPECT_LT(read_done - t0, std::chrono::milliseconds(1000));
  EXPECT_GT(write_done - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ("after", ReadFile(v / "f"));
}

TEST(Quiesce, TheCommandsStatusIsPassedOnAndAnExpiredHoldFails) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  CommandResult failing = RunCommand(Quiesce(v, "-q", "sh -c 'exit 3'"));
  EXPECT_EQ(3, failing.exit_code) << failing.output;
  CommandResult expired = RunCommand(Quiesce(v, "--timeout 1", "sleep 3"));
  EXPECT_NE(0, expired.exit_code) << expired.output;
  EXPECT_TRUE(Contains(expired.output, "expired")) << expired.output;
  WriteFile(v / "g", "changes go on after an expired hold");
  EXPECT_EQ("changes go on after an expired hold", ReadFile(v / "g"));
  CommandResult missing = RunCommand(Quiesce(v, "", ""));
  EXPECT_EQ(2, missing.exit_code) << missing.output;
  v.Unmount();
  CommandResult unmounted = RunCommand(Quiesce(v, "", "true"));
  EXPECT_EQ(0, unmounted.exit_code) << unmounted.output;
  EXPECT_TRUE(Contains(unmounted.output, "no daemon")) << unmounted.output;
}

}  // namespace
}  // namespace envelopefs::testing
