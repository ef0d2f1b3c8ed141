// A file the kernel forgets while it waits to be sealed (closed, changed) and opens again gets
// the same CipherFile: two objects for one file each recorded their own size, and the late seal
// of the first cut off the second's writes (the file then read as damaged, or short).
// Differential.* failed this way whenever something dropped the kernel's caches.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

// Makes the kernel forget every unused inode of every FUSE mount (it sends FORGET); false if
// not allowed (not root).
bool DropInodeCaches() {
  ::sync();
  std::ofstream drop("/proc/sys/vm/drop_caches");
  drop << "2\n";
  drop.flush();
  return drop.good();
}

TEST(ForgottenInode, AFileForgottenWhileItWaitsToBeSealedKeepsEveryWrite) {
  // Sealing only at unmount, so every closed file waits while its inode is forgotten.
  MountedVolume v(VolumeOptions{"", "--seal-interval 3600"});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  std::string expected;
  for (int round = 0; round < 12; ++round) {
    for (const char* name : {"a.log", "b.log"}) {
      const std::string piece = RandomString(3000 + 977 * round, round * 2 + (name[0] - 'a'));
      int fd = open((v / name).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(static_cast<ssize_t>(piece.size()), write(fd, piece.data(), piece.size()));
      ASSERT_EQ(0, close(fd));
      if (name[0] == 'a') expected += piece;
    }
    if (!DropInodeCaches()) GTEST_SKIP() << "cannot drop the kernel's caches (not root)";
  }
  // Compared as booleans: a difference is kilobytes of random bytes.
  std::string got = ReadFile(v / "a.log");
  EXPECT_TRUE(got == expected) << got.size() << " bytes read, " << expected.size() << " written";
  v.Unmount();
  v.Mount();
  got = ReadFile(v / "a.log");
  EXPECT_TRUE(got == expected) << got.size() << " bytes read after a remount, " << expected.size()
                               << " written\n"
                               << v.DaemonLog();
}

}  // namespace
}  // namespace envelopefs::testing
