// Mounted integration tests: round trips, POSIX behaviour, persistence, keys, no plaintext on disk,
// and the mount fixture's own failure path (a mount that never appears).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

std::string ReadAt(const fs::path& p, uint64_t off, size_t n) {
  int fd = open(p.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  std::string out(n, '\0');
  ssize_t got = pread(fd, out.data(), n, static_cast<off_t>(off));
  close(fd);
  out.resize(got < 0 ? 0 : static_cast<size_t>(got));
  return out;
}

TEST(Mount, RoundTripAtRandomOffsetsAcrossChunkBoundaries) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  fs::path file = v / "data.bin";
  std::string model;
  std::mt19937 rng(42);
  int fd = open(file.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 300; ++i) {
    size_t off = rng() % 200000;
    size_t len = 1 + rng() % (i % 10 == 0 ? 70000 : 9000);
    std::string data = RandomString(len, static_cast<uint32_t>(i));
    ASSERT_EQ(static_cast<ssize_t>(len), pwrite(fd, data.data(), len, static_cast<off_t>(off)));
    if (model.size() < off + len) model.resize(off + len, '\0');
    model.replace(off, len, data);
    if (i % 7 == 0) {
      size_t roff = rng() % (model.size() + 10);
      size_t rlen = rng() % 50000;
      std::string got(rlen, '\0');
      ssize_t n = pread(fd, got.data(), rlen, static_cast<off_t>(roff));
      ASSERT_GE(n, 0);
      got.resize(static_cast<size_t>(n));
      std::string want = roff < model.size() ? model.substr(roff, rlen) : "";
      ASSERT_EQ(want, got) << "read at " << roff;
    }
  }
  close(fd);
  EXPECT_EQ(model.size(), fs::file_size(file));
  EXPECT_EQ(model, ReadFile(file));
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(model, ReadFile(file)) << "content changed across remount";
}

TEST(Mount, TruncateGrowShrinkAndSparse) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  fs::path f = v / "t";
  WriteFile(f, std::string(10000, 'a'));
  fs::resize_file(f, 5000);
  EXPECT_EQ(std::string(5000, 'a'), ReadFile(f));
  fs::resize_file(f, 100000);
  EXPECT_EQ(std::string(5000, 'a') + std::string(95000, '\0'), ReadFile(f));
  fs::resize_file(f, 0);
  EXPECT_EQ("", ReadFile(f));
  // A write far past the end leaves an authenticated hole that reads as zeros.
  int fd = open(f.c_str(), O_WRONLY);
  ASSERT_EQ(3, pwrite(fd, "end", 3, 1 << 20));
  close(fd);
  std::string all = ReadFile(f);
  ASSERT_EQ((1u << 20) + 3, all.size());
  EXPECT_EQ(std::string(1 << 20, '\0'), all.substr(0, 1 << 20));
  EXPECT_EQ("end", all.substr(1 << 20));
  // Truncating up to 1 TiB is instant and uses no space.
  fs::path big = v / "big";
  WriteFile(big, "x");
  fs::resize_file(big, 1ull << 40);
  EXPECT_EQ(1ull << 40, fs::file_size(big));
  struct stat st;
  ASSERT_EQ(0, stat(big.c_str(), &st));
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  EXPECT_EQ(std::string("x") + std::string(4095, '\0'), ReadAt(big, 0, 4096));
  EXPECT_EQ(std::string(100, '\0'), ReadAt(big, (1ull << 40) - 100, 1000));
  // 1 PB behaves as a plain file on the backing file system does: instant and sparse where it
  // fits (xfs, btrfs), EFBIG where it does not (ext4 stops at 16 TiB).
  const fs::path probe = v.cipher().parent_path() / "probe";
  WriteFile(probe, "x");
  const int plain_rc = truncate(probe.c_str(), 1ll << 50) == 0 ? 0 : errno;
  const int env_rc = truncate(big.c_str(), 1ll << 50) == 0 ? 0 : errno;
  EXPECT_EQ(plain_rc, env_rc);
  if (env_rc == 0) {
    EXPECT_EQ(1ull << 50, fs::file_size(big));
  }
}

TEST(Mount, AppendAndConcurrentWriters) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::path f = v / "log";
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int fd = open(f.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      std::string line = std::string(99, static_cast<char>('a' + t)) + "\n";
      for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(100, write(fd, line.data(), line.size()));
      }
      close(fd);
    });
  }
  for (auto& t : threads) t.join();
  std::string all = ReadFile(f);
  ASSERT_EQ(4u * 200 * 100, all.size());
  for (size_t i = 0; i < all.size(); i += 100) {  // every line intact: appends are atomic
    ASSERT_EQ(std::string(99, all[i]) + "\n", all.substr(i, 100)) << i;
  }
}

TEST(Mount, ConcurrentReadersAndWritersOnOneFile) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  fs::path f = v / "shared";
  const size_t kBlock = 3000, kBlocks = 64;
  WriteFile(f, std::string(kBlock * kBlocks, '.'));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int fd = open(f.c_str(), O_RDWR);
      std::mt19937 rng(t);
      for (int i = 0; i < 300; ++i) {
        size_t b = rng() % kBlocks;
        if (t % 2 == 0) {
          std::string data(kBlock, static_cast<char>('A' + rng() % 26));
          EXPECT_EQ(static_cast<ssize_t>(kBlock), pwrite(fd, data.data(), kBlock, b * kBlock));
        } else {
          std::string got(kBlock, '\0');
          ASSERT_EQ(static_cast<ssize_t>(kBlock), pread(fd, got.data(), kBlock, b * kBlock));
          // As on ext4, a read racing a write may see part of it (page granularity), but
          // never anything that was not written.
          for (char c : got) ASSERT_TRUE(c == '.' || (c >= 'A' && c <= 'Z')) << int(c);
        }
      }
      close(fd);
    });
  }
  for (auto& t : threads) t.join();
  // Writes are atomic with respect to each other: every block holds one letter.
  std::string all = ReadFile(f);
  ASSERT_EQ(kBlock * kBlocks, all.size());
  for (size_t b = 0; b < kBlocks; ++b) {
    EXPECT_EQ(std::string(kBlock, all[b * kBlock]), all.substr(b * kBlock, kBlock)) << b;
  }
}

TEST(Mount, PosixNamespaceOperations) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_directories(v / "a/b/c");
  WriteFile(v / "a/b/c/f", "hello");
  fs::rename(v / "a/b/c/f", v / "a/g");
  EXPECT_EQ("hello", ReadFile(v / "a/g"));
  WriteFile(v / "a/h", "other");
  fs::rename(v / "a/g", v / "a/h");  // over an existing file
  EXPECT_EQ("hello", ReadFile(v / "a/h"));
  EXPECT_FALSE(fs::exists(v / "a/g"));
  WriteFile(v / "x", "X");
  WriteFile(v / "y", "Y");
  EXPECT_EQ(0,
            renameat2(AT_FDCWD, (v / "x").c_str(), AT_FDCWD, (v / "y").c_str(), RENAME_EXCHANGE));
  EXPECT_EQ("Y", ReadFile(v / "x"));
  EXPECT_EQ("X", ReadFile(v / "y"));
  EXPECT_EQ(-1,
            renameat2(AT_FDCWD, (v / "x").c_str(), AT_FDCWD, (v / "y").c_str(), RENAME_NOREPLACE));
  EXPECT_EQ(EEXIST, errno);
  fs::rename(v / "a/b", v / "moved");  // a directory across directories
  EXPECT_TRUE(fs::is_directory(v / "moved/c"));
  EXPECT_EQ(-1, rmdir((v / "moved").c_str()));
  EXPECT_EQ(ENOTEMPTY, errno);
  EXPECT_EQ(0, rmdir((v / "moved/c").c_str()));
  EXPECT_EQ(0, rmdir((v / "moved").c_str()));
  fs::create_directory(v / "empty");
  fs::create_directory(v / "full");
  fs::rename(v / "full", v / "empty");  // over an empty directory
  EXPECT_FALSE(fs::exists(v / "full"));
  // Symlinks and hard links.
  fs::create_symlink("a/h", v / "link");
  EXPECT_EQ("a/h", fs::read_symlink(v / "link").string());
  EXPECT_EQ(3u, fs::symlink_status(v / "link").type() == fs::file_type::symlink ? 3u : 0u);
  EXPECT_EQ("hello", ReadFile(v / "link"));
  struct stat lst;
  ASSERT_EQ(0, lstat((v / "link").c_str(), &lst));
  EXPECT_EQ(3, lst.st_size);
  fs::create_hard_link(v / "a/h", v / "hard");
  EXPECT_EQ(2u, fs::hard_link_count(v / "hard"));
  WriteFile(v / "hard", "changed through the link");
  EXPECT_EQ("changed through the link", ReadFile(v / "a/h"));
  // Unlink of an open file: still readable and writable through the descriptor.
  int fd = open((v / "a/h").c_str(), O_RDWR);
  fs::remove(v / "a/h");
  fs::remove(v / "hard");
  char buf[8] = {};
  EXPECT_EQ(7, pread(fd, buf, 7, 0));
  EXPECT_EQ("changed", std::string(buf, 7));
  EXPECT_EQ(4, pwrite(fd, "more", 4, 100));
  close(fd);
  // A FIFO.
  EXPECT_EQ(0, mkfifo((v / "fifo").c_str(), 0600));
  EXPECT_TRUE(fs::is_fifo(v / "fifo"));
  // Permissions and times.
  fs::permissions(v / "x", fs::perms::owner_read);
  struct stat st;
  ASSERT_EQ(0, stat((v / "x").c_str(), &st));
  EXPECT_EQ(0400u, st.st_mode & 07777);
  struct timespec times[2] = {{1000000000, 0}, {1200000000, 5}};
  ASSERT_EQ(0, utimensat(AT_FDCWD, (v / "x").c_str(), times, 0));
  ASSERT_EQ(0, stat((v / "x").c_str(), &st));
  EXPECT_EQ(1200000000, st.st_mtim.tv_sec);
  EXPECT_EQ(0, chown((v / "x").c_str(), 1234, 5678));
  ASSERT_EQ(0, stat((v / "x").c_str(), &st));
  EXPECT_EQ(1234u, st.st_uid);
  // Listing.
  std::set<std::string> names;
  for (auto& e : fs::directory_iterator(v.mnt())) names.insert(e.path().filename());
  EXPECT_EQ((std::set<std::string>{"a", "empty", "x", "y", "link", "fifo"}), names);
  struct statvfs sv;
  ASSERT_EQ(0, statvfs(v.mnt().c_str(), &sv));
  EXPECT_GE(sv.f_namemax, 255u);
}

TEST(Mount, LongNamesLargeDirectoriesAndXattrs) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  std::string long_name(255, 'n');
  WriteFile(v / long_name, "long");
  EXPECT_EQ("long", ReadFile(v / long_name));
  fs::rename(v / long_name, v / (std::string(200, 'm')));
  EXPECT_EQ("long", ReadFile(v / std::string(200, 'm')));
  fs::create_directory(v / "big");
  for (int i = 0; i < 3000; ++i) WriteFile(v / "big" / ("file-" + std::to_string(i)), "");
  size_t count = 0;
  for (auto& e : fs::directory_iterator(v / "big")) {
    (void)e;
    ++count;
  }
  EXPECT_EQ(3000u, count);
  for (auto& e : fs::directory_iterator(v.cipher())) {
    EXPECT_LE(e.path().filename().string().size(), 255u);
  }
  fs::path f = v / "x";
  WriteFile(f, "x");
  ASSERT_EQ(0, setxattr(f.c_str(), "user.secret", "canary-xattr-value", 18, 0));
  char buf[64];
  ASSERT_EQ(18, getxattr(f.c_str(), "user.secret", buf, sizeof buf));
  EXPECT_EQ("canary-xattr-value", std::string(buf, 18));
  ssize_t n = listxattr(f.c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string("user.secret\0", 12), std::string(buf, static_cast<size_t>(n)));
  ASSERT_EQ(0, removexattr(f.c_str(), "user.secret"));
  EXPECT_EQ(-1, getxattr(f.c_str(), "user.secret", buf, sizeof buf));
}

TEST(Mount, MmapSharedWritesReachTheFile) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::path f = v / "mapped";
  WriteFile(f, std::string(50000, 'a'));
  int fd = open(f.c_str(), O_RDWR);
  void* p = mmap(nullptr, 50000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(MAP_FAILED, p);
  std::memcpy(static_cast<char*>(p) + 20000, "MMAP", 4);
  ASSERT_EQ(0, msync(p, 50000, MS_SYNC));
  munmap(p, 50000);
  close(fd);
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("MMAP", ReadFile(f).substr(20000, 4));
}

TEST(Mount, NoPlaintextNamesOrContentInTheCipherDir) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const std::string canary = "CANARY-7f3a9-plaintext";
  fs::create_directories(v / ("dir-" + canary));
  WriteFile(v / ("dir-" + canary) / ("file-" + canary), canary + canary + canary);
  fs::create_symlink("target-" + canary, v / "sym");
  setxattr((v / "sym").c_str(), "user.k", canary.data(), canary.size(), XATTR_CREATE);
  WriteFile(v / "small", canary);
  v.Unmount();
  RunCommand("sync");
  CommandResult grep = RunCommand("grep -r -a -l " + Quote(canary) + " " + Quote(v.cipher()));
  EXPECT_EQ(1, grep.exit_code) << "plaintext found in: " << grep.output;
  CommandResult names = RunCommand("find " + Quote(v.cipher()) + " | grep -a " + Quote(canary));
  EXPECT_EQ(1, names.exit_code) << names.output;
  CommandResult links =
      RunCommand("find " + Quote(v.cipher()) + " -type l -printf '%l\\n' | grep " + Quote(canary));
  EXPECT_EQ(1, links.exit_code) << links.output;
  CommandResult xattrs = RunCommand("getfattr -R -d -m - " + Quote(v.cipher()) +
                                    " 2>/dev/null | grep " + Quote(canary));
  EXPECT_NE(0, xattrs.exit_code) << xattrs.output;
}

TEST(Mount, EveryFileHasItsOwnFileIdAndWrappedDek) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  for (int i = 0; i < 50; ++i) WriteFile(v / ("f" + std::to_string(i)), "same content");
  v.Unmount();
  std::set<std::string> ids, slots;
  size_t files = 0;
  for (const fs::path& p : FilesBelow(v.cipher())) {
    std::vector<uint8_t> b = ReadBytes(p);
    if (b.size() < 512 || std::memcmp(b.data(), "ENVLPFS\x01", 8) != 0) continue;
    ++files;
    ids.insert(std::string(b.begin() + 16, b.begin() + 32));
    slots.insert(std::string(b.begin() + 64 + 28, b.begin() + 64 + 60));  // wrapped DEK
  }
  EXPECT_EQ(50u, files);
  EXPECT_EQ(50u, ids.size());
  EXPECT_EQ(50u, slots.size());
}

TEST(Mount, WrongKeyFailsCleanlyAndMountsNothing) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  v.Unmount();
  TempDir other;
  fs::path wrong = other.path() / "wrong";
  RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(wrong));
  fs::path mnt = other.path() / "mnt";
  fs::create_directory(mnt);
  CommandResult r = RunCommand(std::string(ENVELOPEFS_BINARY) + " --keyfile " + Quote(wrong) + " " +
                               Quote(v.cipher()) + " " + Quote(mnt));
  EXPECT_NE(0, r.exit_code);
  EXPECT_EQ(1, std::count(r.output.begin(), r.output.end(), '\n')) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("wrong key")) << r.output;
  EXPECT_FALSE(IsFuseMount(mnt));
  CommandResult bad = RunCommand(std::string(ENVELOPEFS_BINARY) + " --bogus x y");
  EXPECT_EQ(2, bad.exit_code) << bad.output;
}

TEST(Mount, DaemonizesAndUnmountsWithFusermount) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "persisted");
  v.Unmount();
  TempDir other;
  fs::path mnt = other.path() / "mnt";
  fs::create_directory(mnt);
  CommandResult r = RunCommand(std::string(ENVELOPEFS_BINARY) + " --keyfile " + Quote(v.keyfile()) +
                               " " + Quote(v.cipher()) + " " + Quote(mnt));
  ASSERT_EQ(0, r.exit_code) << r.output;
  bool mounted = IsFuseMount(mnt);  // exit 0 means mounted
  std::string content = mounted ? ReadFile(mnt / "f") : "";
  RunCommand("fusermount3 -u " + Quote(mnt));
  for (int i = 0; i < 50 && IsFuseMount(mnt); ++i) usleep(100000);
  if (IsFuseMount(mnt)) RunCommand("fusermount3 -uz " + Quote(mnt));
  EXPECT_TRUE(mounted);
  EXPECT_EQ("persisted", content);
}

TEST(Mount, ReadOnlyMountServesReadsAndRefusesWrites) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "kept", "data");
  v.Unmount();
  v.set_mount_flags("--ro");
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("data", ReadFile(v / "kept"));
  EXPECT_EQ(-1, open((v / "kept").c_str(), O_WRONLY));
  EXPECT_EQ(EROFS, errno);
  EXPECT_EQ(-1, open((v / "new").c_str(), O_WRONLY | O_CREAT, 0644));
  EXPECT_EQ(EROFS, errno);
  EXPECT_EQ(-1, mkdir((v / "dir").c_str(), 0755));
  EXPECT_EQ(EROFS, errno);
}

TEST(Mount, AllowOtherGivesOtherUsersLocalDiskPermissionChecks) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  MountedVolume v(VolumeOptions{"", "-o allow_other"});
  ASSERT_MOUNTED(v);
  // A new volume's root is 0700 (its cipher dir's mode); opening it up is a chmod, as on ext4.
  ASSERT_EQ(0, chmod(v.mnt().c_str(), 0755));
  WriteFile(v / "private", "secret");
  chmod((v / "private").c_str(), 0600);
  WriteFile(v / "public", "hello");
  chmod((v / "public").c_str(), 0644);
  fs::create_directory(v / "shared");
  chmod((v / "shared").c_str(), 0777);
  // The child starts inside the mount: the test's temp dir itself is 0700.
  EXPECT_EQ(EACCES, AsNobody(v.mnt(), [] { return open("private", O_RDONLY) < 0 ? errno : 0; }));
  EXPECT_EQ(0, AsNobody(v.mnt(), [] {
              int fd = open("public", O_RDONLY);
              char buf[5];
              return fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0 ? 0 : 1;
            }));
  EXPECT_EQ(EACCES, AsNobody(v.mnt(), [] { return open("public", O_WRONLY) < 0 ? errno : 0; }));
  EXPECT_EQ(0, AsNobody(v.mnt(), [] {
              int fd = open("shared/mine", O_WRONLY | O_CREAT, 0600);
              return fd >= 0 && write(fd, "x", 1) == 1 ? 0 : 1;
            }));
  struct stat st;
  ASSERT_EQ(0, stat((v / "shared/mine").c_str(), &st));
  EXPECT_EQ(65534u, st.st_uid);  // new entries belong to their creator, as on ext4
  EXPECT_EQ(65534u, st.st_gid);
}

// More files than the daemon may hold descriptors for (without file handles, each cached inode
// holds one): it asks the kernel to forget idle entries, so a walk over a large tree never fails
// with EMFILE.
TEST(Mount, LargeTreesStayWithinTheDescriptorBudget) {
  setenv("ENVELOPEFS_MAX_INODES", "300", 1);
  setenv("ENVELOPEFS_NO_FILE_HANDLES", "1", 1);  // a descriptor per inode
  MountedVolume v;
  unsetenv("ENVELOPEFS_NO_FILE_HANDLES");
  unsetenv("ENVELOPEFS_MAX_INODES");
  ASSERT_MOUNTED(v);
  fs::create_directory(v / "many");
  const int kFiles = 2000;
  for (int i = 0; i < kFiles; ++i) {
    WriteFile(v / "many" / ("f" + std::to_string(i)), "content " + std::to_string(i));
  }
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kFiles; ++i) {
      ASSERT_EQ("content " + std::to_string(i), ReadFile(v / "many" / ("f" + std::to_string(i))));
    }
  }
  fs::rename(v / "many" / "f7", v / "renamed");
  EXPECT_EQ("content 7", ReadFile(v / "renamed"));
  size_t listed = 0;
  for (auto& e : fs::directory_iterator(v / "many")) listed += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(static_cast<size_t>(kFiles - 1), listed);
  usleep(600 * 1000);  // the daemon trims every 200 ms
  EXPECT_LT(DescriptorsOf(v.pid()), 600u) << "descriptors are not bounded";
}

// A Hive-partitioned lake has far more directories than files per directory: directories are
// forgotten too, so writing, listing, reading and deleting it stays within the budget.
TEST(Mount, APartitionedTreeStaysWithinTheDescriptorBudget) {
  setenv("ENVELOPEFS_MAX_INODES", "200", 1);
  setenv("ENVELOPEFS_NO_FILE_HANDLES", "1", 1);  // a descriptor per inode
  MountedVolume v;
  unsetenv("ENVELOPEFS_NO_FILE_HANDLES");
  unsetenv("ENVELOPEFS_MAX_INODES");
  ASSERT_MOUNTED(v);
  auto partition = [&](int i) {
    return v / "events" / ("month=" + std::to_string(i / 100)) / ("day=" + std::to_string(i));
  };
  const int kPartitions = 1500;
  size_t peak = 0;
  for (int i = 0; i < kPartitions; ++i) {
    fs::create_directories(partition(i));
    WriteFile(partition(i) / "part-0.csv", "row " + std::to_string(i) + "\n");
    if (i % 100 == 99) peak = std::max(peak, DescriptorsOf(v.pid()));
  }
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(v / "events")) files += e.is_regular_file();
  EXPECT_EQ(static_cast<size_t>(kPartitions), files);
  for (int i = 0; i < kPartitions; ++i) {
    ASSERT_EQ("row " + std::to_string(i) + "\n", ReadFile(partition(i) / "part-0.csv"));
  }
  peak = std::max(peak, DescriptorsOf(v.pid()));
  EXPECT_EQ(static_cast<uintmax_t>(kPartitions * 2 + 15 + 1), fs::remove_all(v / "events"));
  EXPECT_LT(peak, 500u) << "directories pin descriptors";
}

// The fixture itself: a daemon that never mounts fails Mount, and is killed and reaped, so that
// mounted() is false and ASSERT_MOUNTED stops the test instead of letting it run on a bare dir.
TEST(MountFixture, AMountThatNeverAppearsKillsTheDaemonAndIsNotMounted) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  v.Unmount();
  // The "daemon" sleeps instead of mounting (the wrapper's shell ignores the real command line).
  ASSERT_EQ(0, setenv("ENVELOPEFS_TEST_DAEMON_WRAPPER", "sh -c 'sleep 60' --", 1));
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter intercept(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    v.Mount();
  }
  unsetenv("ENVELOPEFS_TEST_DAEMON_WRAPPER");
  ASSERT_EQ(1, failures.size());
  EXPECT_TRUE(failures.GetTestPartResult(0).fatally_failed());
  EXPECT_TRUE(Contains(failures.GetTestPartResult(0).message(), "did not appear"))
      << failures.GetTestPartResult(0).message();
  EXPECT_FALSE(v.mounted());
  EXPECT_FALSE(IsFuseMount(v.mnt()));
  // Reaped: this process has no child left (RunCommand's are reaped by pclose).
  errno = 0;
  EXPECT_EQ(-1, waitpid(-1, nullptr, WNOHANG));
  EXPECT_EQ(ECHILD, errno);
  // And the volume mounts again.
  v.Mount();
  ASSERT_MOUNTED(v);
}

}  // namespace
}  // namespace envelopefs::testing
