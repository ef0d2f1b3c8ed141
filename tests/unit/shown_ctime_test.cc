// ShownCtime: the xattr value's byte layout (a fixed vector, envelopefs-format(5)), what makes a
// recorded change time apply, and recording one on a real file.
#include "envelopefs/shown_ctime.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.h"

namespace envelopefs {
namespace {

struct timespec At(time_t sec, long nsec) {
  struct timespec t {};
  t.tv_sec = sec;
  t.tv_nsec = nsec;
  return t;
}

TEST(ShownCtime, TheValueLayoutIsFixed) {
  const ShownCtimeRecord record{At(0x0102030405060708, 0x090a0b0c), At(1'700'000'000, 999'999'999)};
  const auto value = EncodeShownCtime(record);
  const std::vector<uint8_t> expected = {
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // shown seconds, i64 LE
      0x0c, 0x0b, 0x0a, 0x09,                          // shown nanoseconds, u32 LE
      0x00, 0xf1, 0x53, 0x65, 0x00, 0x00, 0x00, 0x00,  // stamp seconds
      0xff, 0xc9, 0x9a, 0x3b};                         // stamp nanoseconds
  EXPECT_EQ(expected, std::vector<uint8_t>(value.begin(), value.end()));
  auto decoded = DecodeShownCtime(value);
  ASSERT_TRUE(decoded);
  EXPECT_TRUE(SameTime(record.shown, decoded->shown));
  EXPECT_TRUE(SameTime(record.stamp, decoded->stamp));
}

TEST(ShownCtime, MalformedValuesAreIgnored) {
  auto value = EncodeShownCtime({At(5, 0), At(10, 0)});
  EXPECT_FALSE(DecodeShownCtime(std::span<const uint8_t>(value.data(), value.size() - 1)));
  std::vector<uint8_t> longer(value.begin(), value.end());
  longer.push_back(0);
  EXPECT_FALSE(DecodeShownCtime(longer));
  value[8] = 0xff;  // shown nanoseconds >= 1e9
  value[9] = 0xff;
  value[10] = 0xff;
  value[11] = 0xff;
  EXPECT_FALSE(DecodeShownCtime(value));
  EXPECT_TRUE(SameTime(At(10, 0), ShownCtime(At(10, 0), value)));
}

TEST(ShownCtime, AppliesOnlyToTheChangeTimeTheRecordingLeft) {
  const auto value = EncodeShownCtime({At(100, 7), At(2000, 500'000'000)});
  EXPECT_TRUE(SameTime(At(100, 7), ShownCtime(At(2000, 500'000'000), value)));
  EXPECT_TRUE(SameTime(At(100, 7), ShownCtime(At(2000, 481'000'000), value)));  // a coarse tick
  EXPECT_TRUE(SameTime(At(100, 7), ShownCtime(At(2000, 504'000'000), value)));
  // Any later (or much earlier) change is a change of its own.
  EXPECT_TRUE(SameTime(At(2000, 506'000'000), ShownCtime(At(2000, 506'000'000), value)));
  EXPECT_TRUE(SameTime(At(2001, 0), ShownCtime(At(2001, 0), value)));
  EXPECT_TRUE(SameTime(At(2000, 400'000'000), ShownCtime(At(2000, 400'000'000), value)));
  EXPECT_TRUE(SameTime(At(-5, 0), ShownCtime(At(-5, 0), value)));
  EXPECT_TRUE(SameTime(At(2000, 500'000'000), ShownCtime(At(2000, 500'000'000), {})));
}

TEST(ShownCtime, RecordingOnAFileKeepsTheTimeUntilTheFileChanges) {
  testing::TempDir dir("shown-ctime");
  const std::string path = (dir.path() / "f").string();
  int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_TRUE(SameTime(st.st_ctim, ReadShownCtime(fd, st)));  // nothing recorded

  auto settle = RecordShownCtime(fd, At(42, 43));
  ASSERT_TRUE(settle) << "the backing file system has no user xattrs";
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_TRUE(SameTime(At(42, 43), ReadShownCtime(fd, st)));
  int path_fd = open(path.c_str(), O_PATH | O_CLOEXEC);  // how the daemon holds files
  ASSERT_GE(path_fd, 0);
  EXPECT_TRUE(SameTime(At(42, 43), ReadShownCtime(path_fd, st)));

  // A change right away (a chmod of the closed file through the daemon) first forgets the
  // record: the change shows.
  ASSERT_LT(std::chrono::system_clock::now(), *settle);
  SettleShownCtime(path_fd);
  ASSERT_EQ(0, fchmod(fd, 0640));
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_TRUE(SameTime(st.st_ctim, ReadShownCtime(fd, st)));
  std::vector<char> none(64);
  EXPECT_LT(fgetxattr(fd, kShownCtimeXattr, none.data(), none.size()), 0);

  // Recorded again, a change after the window needs nothing removed: the record is void.
  settle = RecordShownCtime(fd, At(42, 43));
  ASSERT_TRUE(settle);
  std::this_thread::sleep_until(*settle);
  SettleShownCtime(path_fd);
  EXPECT_GE(fgetxattr(fd, kShownCtimeXattr, none.data(), none.size()), 0);  // left in place
  ASSERT_EQ(0, fchmod(fd, 0600));
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_TRUE(SameTime(st.st_ctim, ReadShownCtime(fd, st)));
  close(path_fd);
  close(fd);
}

}  // namespace
}  // namespace envelopefs
