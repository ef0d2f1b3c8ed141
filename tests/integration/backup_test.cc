// Backups of the cipher dir: an incremental copy after a small change sends about one chunk,
// the header and one index block, not the file (rsync, restic and borg go by changed blocks).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

// rsync's "Literal data" of a --stats output: the bytes it had to send ("1,234" allowed).
long long LiteralBytes(const std::string& stats) {
  const std::string label = "Literal data: ";
  const size_t at = stats.find(label);
  if (at == std::string::npos) return -1;
  std::string digits;
  for (size_t i = at + label.size(); i < stats.size() && stats[i] != ' '; ++i) {
    if (stats[i] != ',') digits.push_back(stats[i]);
  }
  return digits.empty() ? -1 : std::atoll(digits.c_str());
}

TEST(Backup, AOneByteChangeToA256MiBFileSendsAboutOneChunk) {
  constexpr size_t kMiB = 1 << 20;
  TempDir t;
  MountedVolume v;
  ASSERT_MOUNTED(v);
  {
    int fd = open((v / "big.parquet").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    const std::string block = RandomString(kMiB, 1);
    for (int i = 0; i < 256; ++i)
      ASSERT_EQ(static_cast<ssize_t>(kMiB), write(fd, block.data(), kMiB));
    close(fd);
  }
  WriteFile(v / "small.csv", "a,b\n1,2\n");
  v.Unmount();  // sealed
  const std::string copy = (t.path() / "copy").string();
  const std::string rsync =
      "rsync -a --no-whole-file --stats " + Quote(v.cipher().string()) + "/ " + Quote(copy) + "/";
  CommandResult first = RunCommand(rsync, 120);
  ASSERT_EQ(0, first.exit_code) << first.output;
  EXPECT_GT(LiteralBytes(first.output), 256ll * kMiB);

  v.Mount();
  ASSERT_MOUNTED(v);
  {
    int fd = open((v / "big.parquet").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(1, pwrite(fd, "x", 1, 100 * kMiB + 12345));
    close(fd);
  }
  v.Unmount();
  CommandResult second = RunCommand(rsync, 120);
  ASSERT_EQ(0, second.exit_code) << second.output;
  const long long sent = LiteralBytes(second.output);
  ASSERT_GE(sent, 0) << second.output;
  // One 16 KiB chunk, the 512-byte header and a 4 KiB index block, in rsync's blocks (about
  // 16 KiB each for a file this size), plus the audit log's new lines.
  EXPECT_LT(sent, 128 * 1024) << second.output;
  std::cout << "literal bytes sent: " << sent << "\n";
}

}  // namespace
}  // namespace envelopefs::testing
