// The sealer under a burst of closed files (an untar): every file is sealed in the background,
// with the daemon's usual descriptor limit and under a low one (where closes must wait for the
// sealer rather than exhaust its descriptors), and the daemon never flushes the whole backing
// file system for it (syncfs(2) only for envelopectl quiesce; checked under strace when it is
// installed).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

const std::string kCtl = ENVELOPECTL_BINARY;
constexpr int kFiles = 3000;  // several flush rounds and chunks of the sealer

// Writes kFiles small files in 30 directories through the mount.
void WriteBurst(const MountedVolume& v) {
  for (int d = 0; d < 30; ++d) fs::create_directories(v / ("d" + std::to_string(d)));
  for (int i = 0; i < kFiles; ++i) {
    const std::string rel = "d" + std::to_string(i % 30) + "/f" + std::to_string(i);
    WriteFile(v / rel, RandomString(1 + (i * 977) % 8000, i));
  }
}

// Runs envelopectl verify on the mounted volume's cipher dir until it reports nothing unsealed
// (at most `seconds`); returns its last output.
CommandResult VerifyUntilSealed(const MountedVolume& v, int seconds) {
  const std::string cmd =
      kCtl + " verify --keyfile " + Quote(v.keyfile().string()) + " " + Quote(v.cipher().string());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  CommandResult r = RunCommand(cmd, 120);
  while (r.exit_code != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    r = RunCommand(cmd, 120);
  }
  return r;
}

void BurstIsSealed(const VolumeOptions& options) {
  MountedVolume v(options);
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  WriteBurst(v);
  // Sealed in the background (--seal-interval 1), while still mounted.
  CommandResult r = VerifyUntilSealed(v, 60);
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_TRUE(Contains(r.output, "(" + std::to_string(kFiles) + " files,")) << r.output;
  EXPECT_TRUE(Contains(r.output, "0 damaged, 0 unsealed")) << r.output;
  EXPECT_EQ(RandomString(1 + (1234 * 977) % 8000, 1234), ReadFile(v / "d4/f1234"));
  EXPECT_FALSE(Contains(v.DaemonLog(), "flush failed")) << v.DaemonLog();
  EXPECT_FALSE(Contains(v.DaemonLog(), "Too many open files")) << v.DaemonLog();
}

TEST(Sealing, ABurstOfClosedFilesIsSealedInTheBackground) { BurstIsSealed({}); }

TEST(Sealing, ABurstIsSealedUnder256Descriptors) {
  VolumeOptions options;
  options.max_descriptors = 256;
  BurstIsSealed(options);
}

TEST(Sealing, TheDaemonNeverFlushesTheWholeFileSystem) {
  if (access("/usr/bin/strace", X_OK) != 0) GTEST_SKIP() << "strace is not installed";
  if (getenv("ENVELOPEFS_TEST_DAEMON_WRAPPER") != nullptr) {
    GTEST_SKIP() << "the daemon already runs under a wrapper";
  }
  TempDir t;
  const fs::path trace = t.path() / "trace";
  // The fixture runs the daemon as `WRAPPER envelopefs ...`; strace follows its threads and
  // records every syncfs(2) they make.
  setenv(
      "ENVELOPEFS_TEST_DAEMON_WRAPPER",
      ("/usr/bin/strace -f -qq --seccomp-bpf -e trace=syncfs -o " + Quote(trace.string())).c_str(),
      1);
  MountedVolume v;
  unsetenv("ENVELOPEFS_TEST_DAEMON_WRAPPER");
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  WriteBurst(v);
  CommandResult r = VerifyUntilSealed(v, 120);
  EXPECT_EQ(0, r.exit_code) << r.output;
  // envelopectl quiesce is the one whole-file-system flush (an explicit request for a backup):
  // the trace shows it, so it would show the sealer's too.
  CommandResult q = RunCommand(kCtl + " quiesce " + Quote(v.cipher().string()) + " -- true");
  EXPECT_EQ(0, q.exit_code) << q.output;
  v.Unmount();  // seals whatever is left: that flush is the daemon's own too
  ASSERT_TRUE(fs::exists(trace)) << v.DaemonLog();
  const std::string calls = ReadFile(trace);
  size_t syncfs_calls = 0;
  for (size_t at = calls.find("syncfs("); at != std::string::npos;
       at = calls.find("syncfs(", at + 1)) {
    ++syncfs_calls;
  }
  EXPECT_EQ(1u, syncfs_calls) << calls;
}

}  // namespace
}  // namespace envelopefs::testing
