// Unit tests of the helpers that open paths inside the cipher dir without leaving it
// (beneath.h): what an attacker who rewrites the cipher dir can plant on the way.
#include "envelopefs/beneath.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/temp_dir.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class BeneathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(top_ / "root/dir");
    fs::create_directories(top_ / "outside");
    std::ofstream(top_ / "root/dir/file") << "inside";
    std::ofstream(top_ / "outside/file") << "outside";
    root_.reset(::open((top_ / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }

  testing::TempDir tmp_{"envelopefs-beneath"};
  const fs::path top_ = tmp_.path();
  UniqueFd root_;
};

TEST_F(BeneathTest, OpensARegularFileBelowTheRoot) {
  int fd = OpenRegularBeneath(root_.get(), "dir/file", O_RDONLY);
  ASSERT_GE(fd, 0);
  UniqueFd owned(fd);
  char buf[16] = {};
  EXPECT_EQ(6, ::read(fd, buf, sizeof buf));
  EXPECT_STREQ("inside", buf);
}

TEST_F(BeneathTest, NeverFollowsASymlinkOrLeavesTheRoot) {
  fs::create_directory_symlink(top_ / "outside", top_ / "root/link");
  fs::create_symlink(top_ / "outside/file", top_ / "root/dir/filelink");
  EXPECT_EQ(-ELOOP, OpenRegularBeneath(root_.get(), "link/file", O_RDONLY));
  EXPECT_EQ(-ELOOP, OpenBeneath(root_.get(), "link/file", O_RDONLY));
  EXPECT_GT(0, OpenRegularBeneath(root_.get(), "dir/filelink", O_RDONLY));
  EXPECT_GT(0, OpenBeneath(root_.get(), "dir/filelink", O_RDONLY));
  for (const char* bad :
       {"../outside/file", "/etc/passwd", "dir/../dir/file", "dir//file", "./dir/file", ""}) {
    EXPECT_EQ(-EINVAL, OpenBeneath(root_.get(), bad, O_RDONLY)) << bad;
    EXPECT_EQ(-EINVAL, OpenRegularBeneath(root_.get(), bad, O_RDONLY)) << bad;
  }
}

TEST_F(BeneathTest, NeverOpensOrBlocksOnAFifoOrADevice) {
  ASSERT_EQ(0, ::mkfifo((top_ / "root/dir/fifo").c_str(), 0600));
  // Opening a FIFO without O_NONBLOCK would block here forever if it were opened at all.
  EXPECT_EQ(-EINVAL, OpenRegularBeneath(root_.get(), "dir/fifo", O_RDONLY));
  EXPECT_EQ(-EINVAL, OpenRegularBeneath(root_.get(), "dir", O_RDONLY));  // a directory
  if (::geteuid() == 0) {
    ASSERT_EQ(0, ::mknod((top_ / "root/dir/null").c_str(), S_IFCHR | 0600, makedev(1, 3)));
    EXPECT_EQ(-EINVAL, OpenRegularBeneath(root_.get(), "dir/null", O_RDWR));
  }
}

TEST_F(BeneathTest, ASingleLinkFileRefusesAHardLinkToAnotherFile) {
  UniqueFd dir(::open((top_ / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  fs::create_hard_link(top_ / "outside/file", top_ / "root/log");
  EXPECT_EQ(-EMLINK, OpenRegularFileAt(dir.get(), "log", O_RDWR | O_APPEND, /*create=*/true, 0600,
                                       /*single_link=*/true));
  int fd = OpenRegularFileAt(dir.get(), "new", O_RDWR, /*create=*/true, 0600, true);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_TRUE(fs::is_regular_file(top_ / "root/new"));
}

}  // namespace
}  // namespace envelopefs
