// A backing file deleted behind the daemon's back (a sync tool writing the cipher dir) whose
// inode number the file system gives to a new backing file: the daemon's cached inode of the old
// file, kept by file handle, must not stand for the new one. Before, a lookup of the new file
// got the old inode, whose handle no longer opens (ENOENT), or, while the new file was open, the
// old inode found the new file's CipherFile by number and read the new file's contents.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "inode_number_reuse.h"
#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

class ReusedInodeNumber : public ::testing::Test {
 protected:
  // Makes files "old" and "new", remounts (the daemon caches no descriptor of an inode:
  // ENVELOPEFS_FD_CACHE=0), looks "old" up and keeps it known to the kernel (old_path_), then
  // replaces the backing file of "new", behind the daemon's back, by a copy with the inode
  // number of the old file's backing file, which it deletes.
  void SetUp() override {
    ASSERT_TRUE(v_.mounted()) << v_.DaemonLog();
    WriteFile(v_ / "old", "the old file\n");
    WriteFile(v_ / "new", kNewContents);
    const fs::path old_cipher = CipherOf(v_, v_ / "old");
    const fs::path new_cipher = CipherOf(v_, v_ / "new");
    ASSERT_FALSE(old_cipher.empty() || new_cipher.empty());
    v_.Unmount();
    setenv("ENVELOPEFS_FD_CACHE", "0", 1);
    v_.Mount();
    unsetenv("ENVELOPEFS_FD_CACHE");
    for (int i = 0; i < 100 && !Contains(v_.DaemonLog(), "inodes "); ++i) usleep(20 * 1000);
    if (!Contains(v_.DaemonLog(), "kept as file handles")) {
      GTEST_SKIP() << "the daemon keeps no file handles here (root only)";
    }

    old_path_ = open((v_ / "old").c_str(), O_PATH | O_CLOEXEC);  // the kernel keeps its inode
    ASSERT_GE(old_path_, 0);
    struct stat st;
    ASSERT_EQ(0, fstat(old_path_, &st));
    ASSERT_EQ(0, unlink(old_cipher.c_str()));
    const fs::path reused = CreateFileWithInodeNumber(v_.cipher(), st.st_ino);
    if (reused.empty()) GTEST_SKIP() << "the cipher dir's file system reused no inode number";
    const std::string bytes = ReadFile(new_cipher);
    WriteFile(reused, bytes);
    ASSERT_EQ(0, rename(reused.c_str(), new_cipher.c_str()));
  }

  void TearDown() override {
    if (old_path_ >= 0) close(old_path_);
  }

  static constexpr const char* kNewContents = "the new file, with the old one's inode number\n";
  MountedVolume v_;
  int old_path_ = -1;
};

TEST_F(ReusedInodeNumber, TheNewFileIsLookedUpAndReadThroughTheMount) {
  EXPECT_EQ(kNewContents, ReadFile(v_ / "new")) << v_.DaemonLog();
  EXPECT_EQ(kNewContents, ReadFile(v_ / "new")) << v_.DaemonLog();  // and again, now cached
}

TEST_F(ReusedInodeNumber, TheOldFilesInodeNeverOpensTheNewFile) {
  int fd = open((v_ / "new").c_str(), O_RDONLY | O_CLOEXEC);  // its CipherFile is live
  ASSERT_GE(fd, 0) << v_.DaemonLog();
  // Opening the old inode (the kernel still has it) reopens its deleted backing file.
  const std::string old = "/proc/self/fd/" + std::to_string(old_path_);
  int stale = open(old.c_str(), O_RDONLY | O_CLOEXEC);
  if (stale >= 0) {
    char buf[256];
    const ssize_t n = read(stale, buf, sizeof buf);
    close(stale);
    ADD_FAILURE() << "the deleted file opened and read \""
                  << std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) << "\"";
  }
  close(fd);
}

}  // namespace
}  // namespace envelopefs::testing
