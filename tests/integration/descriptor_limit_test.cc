// The daemon under a low descriptor limit: a Hive-partitioned tree of 5,000 partition
// directories (year=/month=/day=/hour=, a small file in each) is written, listed, read back and
// deleted through a mount whose daemon may hold 256 descriptors, without an error at any step:
// with inodes kept as file handles (the daemon runs as root) and with the fallback forced
// (ENVELOPEFS_NO_FILE_HANDLES=1: a descriptor per inode, bounded by InodeRelief).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

constexpr unsigned long kLimit = 256;
constexpr int kPartitions = 5000;

// The soft descriptor limit of process `pid`.
unsigned long DescriptorLimitOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) == 0) return std::stoul(line.substr(26));
  }
  return 0;
}

// The last 2,000 bytes of `log`.
std::string Tail(const std::string& log) {
  return log.size() > 2000 ? log.substr(log.size() - 2000) : log;
}

std::string Two(int n) { return (n < 10 ? "0" : "") + std::to_string(n); }

// Partition `i`: one hour of 2025.
fs::path Partition(const fs::path& root, int i) {
  return root / "events" / "year=2025" / ("month=" + Two(i / (24 * 28) % 12 + 1)) /
         ("day=" + Two(i / 24 % 28 + 1)) / ("hour=" + Two(i % 24));
}

void LakeUnderTheLimit(bool handles) {
  if (!handles) setenv("ENVELOPEFS_NO_FILE_HANDLES", "1", 1);
  VolumeOptions options;
  options.max_descriptors = kLimit;
  MountedVolume v(options);
  unsetenv("ENVELOPEFS_NO_FILE_HANDLES");
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  if (DescriptorLimitOf(v.pid()) > kLimit) GTEST_SKIP() << "the daemon raised its limit";
  if (handles && geteuid() != 0) GTEST_SKIP() << "file handles need root";
  for (int i = 0; i < 100 && !Contains(v.DaemonLog(), "inodes "); ++i) usleep(20 * 1000);
  ASSERT_TRUE(Contains(v.DaemonLog(), handles ? "kept as file handles" : "no file handles"))
      << v.DaemonLog();

  size_t peak = 0;
  for (int i = 0; i < kPartitions; ++i) {
    std::error_code ec;
    fs::create_directories(Partition(v.mnt(), i), ec);
    ASSERT_FALSE(ec) << "mkdir -p of partition " << i << ": " << ec.message();
    ASSERT_NO_THROW(
        WriteFile(Partition(v.mnt(), i) / "part-00000.csv", "row " + std::to_string(i) + "\n"))
        << "partition " << i;
    if (i % 250 == 249) peak = std::max(peak, DescriptorsOf(v.pid()));
  }
  size_t files = 0, dirs = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(v / "events", ec), end; !ec && it != end;
       it.increment(ec)) {
    files += it->is_regular_file();
    dirs += it->is_directory();
  }
  ASSERT_FALSE(ec) << "listing: " << ec.message();
  EXPECT_EQ(static_cast<size_t>(kPartitions), files);
  const size_t months = (kPartitions - 1) / (24 * 28) + 1;
  const size_t days = (kPartitions - 1) / 24 + 1;
  EXPECT_EQ(1 + months + days + kPartitions, dirs);
  for (int i = 0; i < kPartitions; ++i) {
    ASSERT_EQ("row " + std::to_string(i) + "\n", ReadFile(Partition(v.mnt(), i) / "part-00000.csv"))
        << "partition " << i << "; the daemon's log ends with:\n"
        << Tail(v.DaemonLog());
  }
  peak = std::max(peak, DescriptorsOf(v.pid()));
  EXPECT_EQ(static_cast<uintmax_t>(files + dirs + 1), fs::remove_all(v / "events", ec));
  EXPECT_FALSE(ec) << "rm -rf: " << ec.message();
  EXPECT_TRUE(fs::is_empty(v.mnt()));
  EXPECT_LT(peak, kLimit);
  // With handles a partition costs nothing while no file is open: a few dozen descriptors.
  if (handles) {
    EXPECT_LT(peak, 128u) << "cached inodes pin descriptors";
  }
  EXPECT_FALSE(Contains(v.DaemonLog(), "Too many open files")) << v.DaemonLog();
  // Entries are dropped only through parents the kernel still knows (libfuse logs "fuse:
  // writing device: ..." for a notification the kernel refuses).
  EXPECT_FALSE(Contains(v.DaemonLog(), "writing device")) << v.DaemonLog();
}

TEST(DescriptorLimit, APartitionedLakeUnder256DescriptorsWithFileHandles) {
  LakeUnderTheLimit(/*handles=*/true);
}

TEST(DescriptorLimit, APartitionedLakeUnder256DescriptorsWithoutFileHandles) {
  LakeUnderTheLimit(/*handles=*/false);
}

}  // namespace
}  // namespace envelopefs::testing
