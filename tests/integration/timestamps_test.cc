// File times through the mount, as ext4 keeps them: times set by cp -a, rsync -a, tar and touch
// survive the seal after close, an unmount and a rewrap, and so do change times (a header-only
// rewrite is no change); open(O_TRUNC) empties a file and sets
// its modification and change times; a refused operation and a seal change no time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

const std::string kCtl = ENVELOPECTL_BINARY;
constexpr time_t kOld = 1672480800;  // 2022-12-31 10:00:00 UTC

struct stat Stat(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(0, lstat(p.c_str(), &st)) << p << ": " << std::strerror(errno);
  return st;
}

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

std::string Show(const struct timespec& t) {
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

// Longer than the test mounts' seal interval (1 s), so that every closed file has been sealed.
void WaitForSeal() { std::this_thread::sleep_for(std::chrono::milliseconds(2500)); }

// A source tree with old times: files in two directories, the directories too.
void MakeOldTree(const fs::path& src) {
  fs::create_directories(src / "sub");
  WriteFile(src / "a.csv", "id,value\n1,2\n");
  WriteFile(src / "sub" / "b.parquet", RandomString(70000, 7));  // more than one chunk
  WriteFile(src / "sub" / "empty", "");
  for (const char* rel : {"a.csv", "sub/b.parquet", "sub/empty", "sub", ""}) {
    const struct timespec times[2] = {{kOld - 3600, 0}, {kOld, 123456789}};
    ASSERT_EQ(0, utimensat(AT_FDCWD, (src / rel).c_str(), times, 0));
  }
}

void ExpectSameMtimes(const fs::path& src, const fs::path& copy) {
  for (const char* rel : {"a.csv", "sub/b.parquet", "sub/empty", "sub"}) {
    EXPECT_TRUE(SameTime(Stat(src / rel).st_mtim, Stat(copy / rel).st_mtim))
        << rel << ": " << Show(Stat(src / rel).st_mtim) << " became "
        << Show(Stat(copy / rel).st_mtim);
  }
}

// The change times of the tree's entries under `root`, as stat shows them now.
std::map<std::string, struct timespec> ChangeTimes(const fs::path& root) {
  std::map<std::string, struct timespec> times;
  for (const char* rel : {"a.csv", "sub/b.parquet", "sub/empty", "sub"}) {
    times[rel] = Stat(root / rel).st_ctim;
  }
  return times;
}

// Header-only rewrites (seals, rewrap) show no change: the change times are those of before.
void ExpectChangeTimes(const std::map<std::string, struct timespec>& before, const fs::path& root,
                       const char* after_what) {
  for (const auto& [rel, ctime] : ChangeTimes(root)) {
    EXPECT_TRUE(SameTime(before.at(rel), ctime))
        << rel << " after " << after_what << ": " << Show(before.at(rel)) << " became "
        << Show(ctime);
  }
}

TEST(Timestamps, CpKeepsTimesThroughTheSealAndARemount) {
  TempDir t;
  MakeOldTree(t.path() / "src");
  MountedVolume v;
  ASSERT_MOUNTED(v);
  ASSERT_EQ(0, RunCommand("cp -a " + Quote((t.path() / "src").string()) + " " +
                          Quote((v / "copy").string()))
                   .exit_code);
  const auto ctimes = ChangeTimes(v / "copy");  // before any seal
  WaitForSeal();
  ExpectSameMtimes(t.path() / "src", v / "copy");
  ExpectChangeTimes(ctimes, v / "copy", "the seal");
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  ExpectSameMtimes(t.path() / "src", v / "copy");
  ExpectChangeTimes(ctimes, v / "copy", "a remount");
  // A real change after all that shows.
  ASSERT_EQ(0, chmod((v / "copy" / "a.csv").c_str(), 0600));
  EXPECT_FALSE(SameTime(ctimes.at("a.csv"), Stat(v / "copy" / "a.csv").st_ctim));
}

TEST(Timestamps, TouchAndTarKeepTheirTimes) {
  TempDir t;
  MakeOldTree(t.path() / "src");
  ASSERT_EQ(0, RunCommand("tar -C " + Quote((t.path() / "src").string()) + " -cf " +
                          Quote((t.path() / "src.tar").string()) + " .")
                   .exit_code);
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_directory(v / "x");
  ASSERT_EQ(0, RunCommand("tar -C " + Quote((v / "x").string()) + " -xf " +
                          Quote((t.path() / "src.tar").string()))
                   .exit_code);
  WriteFile(v / "touched", "data");
  ASSERT_EQ(
      0, RunCommand("touch -d 2022-12-31T10:00:00Z " + Quote((v / "touched").string())).exit_code);
  WaitForSeal();
  for (const char* rel : {"a.csv", "sub/b.parquet", "sub/empty", "sub"}) {
    EXPECT_EQ(Stat(t.path() / "src" / rel).st_mtim.tv_sec, Stat(v / "x" / rel).st_mtim.tv_sec)
        << rel;  // tar keeps whole seconds
  }
  EXPECT_EQ(kOld, Stat(v / "touched").st_mtim.tv_sec);
}

TEST(Timestamps, ASecondRsyncSendsNothing) {
  TempDir t;
  MakeOldTree(t.path() / "src");
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const std::string rsync = "rsync -a --itemize-changes " + Quote((t.path() / "src").string()) +
                            "/ " + Quote((v / "dst").string()) + "/";
  CommandResult first = RunCommand(rsync);
  ASSERT_EQ(0, first.exit_code) << first.output;
  EXPECT_NE(std::string::npos, first.output.find("b.parquet")) << first.output;
  WaitForSeal();
  CommandResult second = RunCommand(rsync);
  ASSERT_EQ(0, second.exit_code) << second.output;
  EXPECT_EQ("", second.output);  // nothing sent, no time or attribute changed
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  CommandResult third = RunCommand(rsync);
  EXPECT_EQ("", third.output);
}

TEST(Timestamps, OpenWithOTruncEmptiesTheFileAndSetsItsTimes) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const fs::path f = v / "f";
  WriteFile(f, "a longer first version of the file\n");
  const struct timespec old[2] = {{kOld, 0}, {kOld, 0}};
  ASSERT_EQ(0, utimensat(AT_FDCWD, f.c_str(), old, 0));
  const struct stat before = Stat(f);
  int fd = open(f.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  close(fd);
  struct stat after = Stat(f);
  EXPECT_EQ(0, after.st_size);
  EXPECT_GT(after.st_mtim.tv_sec, kOld);
  EXPECT_GT(after.st_ctim.tv_sec, before.st_ctim.tv_sec - 1);
  EXPECT_EQ("", ReadFile(f));
  // Writing a shorter version over the file (cp, a shell's >) leaves nothing of the old one.
  WriteFile(f, "short\n");
  EXPECT_EQ("short\n", ReadFile(f));
  // An empty file too gets new times, as on ext4.
  WriteFile(v / "e", "");
  ASSERT_EQ(0, utimensat(AT_FDCWD, (v / "e").c_str(), old, 0));
  fd = open((v / "e").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_GT(Stat(v / "e").st_mtim.tv_sec, kOld);
}

TEST(Timestamps, NeitherTheSealNorARefusedOperationChangesATime) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  MountedVolume v(VolumeOptions{"", "-o allow_other"});
  ASSERT_MOUNTED(v);
  ASSERT_EQ(0, chmod(v.mnt().c_str(), 0755));
  WriteFile(v / "f", RandomString(10000, 3));
  ASSERT_EQ(0, chmod((v / "f").c_str(), 0644));
  const struct stat closed = Stat(v / "f");
  WaitForSeal();
  struct stat sealed = Stat(v / "f");
  EXPECT_TRUE(SameTime(closed.st_mtim, sealed.st_mtim));
  EXPECT_TRUE(SameTime(closed.st_ctim, sealed.st_ctim))
      << Show(closed.st_ctim) << " became " << Show(sealed.st_ctim);
  EXPECT_NE(0, AsNobody(v.mnt(), [] { return chmod("f", 0666) == 0 ? 0 : errno; }));
  EXPECT_NE(0, AsNobody(v.mnt(), [] { return open("f", O_WRONLY | O_TRUNC) >= 0 ? 0 : errno; }));
  WaitForSeal();
  const struct stat refused = Stat(v / "f");
  EXPECT_TRUE(SameTime(closed.st_mtim, refused.st_mtim));
  EXPECT_TRUE(SameTime(closed.st_ctim, refused.st_ctim));
  EXPECT_EQ(10000, refused.st_size);
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_TRUE(SameTime(closed.st_ctim, Stat(v / "f").st_ctim));
}

TEST(Timestamps, RewrapKeepsModificationAndChangeTimes) {
  TempDir t;
  MakeOldTree(t.path() / "src");
  MountedVolume v;
  ASSERT_MOUNTED(v);
  ASSERT_EQ(0, RunCommand("cp -a " + Quote((t.path() / "src").string()) + " " +
                          Quote((v / "copy").string()))
                   .exit_code);
  const auto ctimes = ChangeTimes(v / "copy");
  WaitForSeal();
  const fs::path cipher_file = CipherOf(v, v / "copy" / "a.csv");
  ASSERT_FALSE(cipher_file.empty());
  const struct timespec cipher_mtime = Stat(cipher_file).st_mtim;
  const std::string key = " --keyfile " + Quote(v.keyfile().string()) + " ";
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + key + Quote(v.cipher().string())).exit_code);
  CommandResult rewrap = RunCommand(kCtl + " rewrap" + key + Quote(v.cipher().string()));
  ASSERT_EQ(0, rewrap.exit_code) << rewrap.output;
  EXPECT_TRUE(SameTime(cipher_mtime, Stat(cipher_file).st_mtim));
  ExpectSameMtimes(t.path() / "src", v / "copy");
  ExpectChangeTimes(ctimes, v / "copy", "rewrap");
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  ExpectChangeTimes(ctimes, v / "copy", "rewrap and a remount");
  // A restore carries the times too.
  v.Unmount();
  CommandResult restore = RunCommand(kCtl + " decrypt" + key + Quote(v.cipher().string()) + " -o " +
                                     Quote((t.path() / "restored").string()));
  ASSERT_EQ(0, restore.exit_code) << restore.output;
  ExpectSameMtimes(t.path() / "src", t.path() / "restored" / "copy");
}

}  // namespace
}  // namespace envelopefs::testing
