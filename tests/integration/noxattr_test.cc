// envelopefs --noxattr: no extended attributes through the mount (EOPNOTSUPP, as on a file system
// without them), and so no GETXATTR request before each write; the attributes the volume holds
// stay in the cipher dir and show again when it is mounted without the option.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

size_t Occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(NoXattr, XattrCallsFailAndWritesAskForNoAttribute) {
  MountedVolume v(VolumeOptions{"", "-d -o noxattr"});  // -d: libfuse logs every request
  ASSERT_MOUNTED(v);
  const fs::path f = v / "events.log";
  int fd = open(f.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(6, write(fd, "line.\n", 6));
  close(fd);
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += "line.\n";
  EXPECT_EQ(expected, ReadFile(f));

  EXPECT_EQ(-1, setxattr(f.c_str(), "user.k", "v", 1, 0));
  EXPECT_EQ(EOPNOTSUPP, errno);
  char buf[64];
  EXPECT_EQ(-1, getxattr(f.c_str(), "user.k", buf, sizeof(buf)));
  EXPECT_EQ(EOPNOTSUPP, errno);
  EXPECT_EQ(-1, listxattr(f.c_str(), buf, sizeof(buf)));
  EXPECT_EQ(EOPNOTSUPP, errno);
  EXPECT_EQ(-1, removexattr(f.c_str(), "user.k"));
  EXPECT_EQ(EOPNOTSUPP, errno);
  // The kernel asked once, was told ENOSYS, and never again: not before each of the 100 writes.
  EXPECT_LE(Occurrences(v.DaemonLog(), "opcode: GETXATTR"), 1u);
  EXPECT_GE(Occurrences(v.DaemonLog(), "opcode: WRITE"), 100u);
}

TEST(NoXattr, TheVolumesAttributesComeBackWithoutTheOption) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  ASSERT_EQ(0, setxattr((v / "f").c_str(), "user.k", "kept", 4, 0));
  v.Unmount();
  v.set_mount_flags("--noxattr");
  v.Mount();
  ASSERT_MOUNTED(v);
  char buf[64];
  EXPECT_EQ(-1, getxattr((v / "f").c_str(), "user.k", buf, sizeof(buf)));
  EXPECT_EQ(EOPNOTSUPP, errno);
  EXPECT_EQ("data", ReadFile(v / "f"));
  WriteFile(v / "f", "new data");  // rewritten (O_TRUNC) while the attribute is hidden
  v.Unmount();
  v.set_mount_flags("");
  v.Mount();
  ASSERT_MOUNTED(v);
  ssize_t n = getxattr((v / "f").c_str(), "user.k", buf, sizeof(buf));
  ASSERT_EQ(4, n) << strerror(errno);
  EXPECT_EQ("kept", std::string(buf, 4));
  EXPECT_EQ("new data", ReadFile(v / "f"));
}

}  // namespace
}  // namespace envelopefs::testing
