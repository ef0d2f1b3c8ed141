// POSIX semantics and limits, side by side with a plain directory on the backing file system
// (ext4): every case gives the same result and errno through the mount as there, and an
// operation that fails changes nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

int Err(int rc) { return rc < 0 ? errno : 0; }

// open(2)'s errno, 0 if it opens (and then closes it again).
int OpenErr(const fs::path& path, int flags) {
  int fd = open(path.c_str(), flags, 0644);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

bool Later(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

class PosixLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_MOUNTED(v_);
    ref_ = ref_dir_.path() / "ref";
    fs::create_directory(ref_);
  }

  // Runs `op` with the mount's root and with the reference root; expects the same errno (0 for
  // success) and returns it.
  int Both(const std::string& what, const std::function<int(const fs::path&)>& op) {
    errno = 0;
    const int mounted = op(v_.mnt());
    errno = 0;
    const int reference = op(ref_);
    EXPECT_EQ(reference, mounted) << what << ": ext4 says " << std::strerror(reference)
                                  << ", the mount " << std::strerror(mounted);
    return mounted;
  }

  MountedVolume v_;
  TempDir ref_dir_;
  fs::path ref_;
};

TEST_F(PosixLimits, ChownWithoutChangeStillSetsTheChangeTime) {
  Both("create", [](const fs::path& r) {
    WriteFile(r / "f", "x");
    return 0;
  });
  Both("chown -1 -1", [](const fs::path& r) {
    struct stat before, after;
    if (lstat((r / "f").c_str(), &before) != 0) return errno;
    usleep(20000);
    if (chown((r / "f").c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1)) != 0) {
      return errno;
    }
    if (lstat((r / "f").c_str(), &after) != 0) return errno;
    return Later(after.st_ctim, before.st_ctim) ? 0 : EAGAIN;  // EAGAIN: ctime did not move
  });
  Both("chown to the same owner", [](const fs::path& r) {
    struct stat before, after;
    if (lstat((r / "f").c_str(), &before) != 0) return errno;
    usleep(20000);
    if (chown((r / "f").c_str(), before.st_uid, before.st_gid) != 0) return errno;
    if (lstat((r / "f").c_str(), &after) != 0) return errno;
    return Later(after.st_ctim, before.st_ctim) ? 0 : EAGAIN;
  });
}

TEST_F(PosixLimits, NamesOf255BytesAndNot256) {
  const std::string n255(255, 'n'), n256(256, 'n');
  for (const std::string* name : {&n255, &n256}) {
    const std::string len = std::to_string(name->size());
    Both("create " + len,
         [&](const fs::path& r) { return OpenErr(r / *name, O_CREAT | O_WRONLY | O_EXCL); });
    Both("mkdir " + len,
         [&](const fs::path& r) { return Err(mkdir((r / ("d" + *name)).c_str(), 0755)); });
    Both("symlink " + len, [&](const fs::path& r) {
      return Err(symlink("target", (r / ("s" + name->substr(1))).c_str()));
    });
    Both("rename to " + len, [&](const fs::path& r) {
      WriteFile(r / "src", "x");
      return Err(rename((r / "src").c_str(), (r / ("r" + name->substr(1))).c_str()));
    });
  }
  Both("listing", [&](const fs::path& r) {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(r)) n += e.path().filename().string().size() == 255;
    return n == 4 ? 0 : EAGAIN;
  });
}

TEST_F(PosixLimits, PathsOf4000Bytes) {
  // 19 directories of 200-byte names and a file: a 4000-byte relative path.
  std::string rel;
  for (int i = 0; i < 19; ++i) rel += std::string(199, static_cast<char>('a' + i)) + "/";
  rel += std::string(4000 - rel.size(), 'f');
  ASSERT_EQ(4000u, rel.size());
  Both("mkdir -p", [&](const fs::path& r) {
    std::error_code ec;
    fs::create_directories((r / rel).parent_path(), ec);
    return ec.value();
  });
  Both("write", [&](const fs::path& r) {
    WriteFile(r / rel, "deep");
    return ReadFile(r / rel) == "deep" ? 0 : EIO;
  });
  // Longer than PATH_MAX is refused by the kernel before any file system sees it.
  Both("path of 4096 bytes", [&](const fs::path& r) {
    const std::string too_long = (r / rel).string() + std::string(4096, 'x');
    return OpenErr(too_long, O_RDONLY);
  });
}

// The readlink(2) of `link`, or the errno; `*target` receives it.
int ReadlinkErr(const fs::path& link, std::string* target) {
  std::string buf(8192, '\0');
  ssize_t n = readlink(link.c_str(), buf.data(), buf.size());
  if (n < 0) return errno;
  *target = buf.substr(0, static_cast<size_t>(n));
  return 0;
}

TEST_F(PosixLimits, SymlinkTargetsOf4095BytesAndNot4096) {
  // "./" 2046 times and "fff": 4,095 bytes that resolve to the file "fff" beside the link.
  std::string target;
  for (int i = 0; i < 2046; ++i) target += "./";
  target += "fff";
  ASSERT_EQ(4095u, target.size());
  auto expect_link = [&](const fs::path& link) {
    std::string got;
    if (int err = ReadlinkErr(link, &got)) return err;
    struct stat st;
    if (lstat(link.c_str(), &st) != 0) return errno;
    if (got != target || st.st_size != 4095 || !S_ISLNK(st.st_mode)) return EBADMSG;
    return ReadFile(link) == "followed" ? 0 : EIO;  // followed to "fff"
  };
  ASSERT_EQ(0, Both("directories and files", [](const fs::path& r) {
              for (const char* d : {"d", "e"}) {
                if (mkdir((r / d).c_str(), 0755) != 0) return errno;
                WriteFile(r / d / "fff", "followed");
              }
              return 0;
            }));
  ASSERT_EQ(0, Both("symlink of 4095 bytes", [&](const fs::path& r) {
              return Err(symlink(target.c_str(), (r / "d" / "l").c_str()));
            }));
  Both("readlink and follow", [&](const fs::path& r) { return expect_link(r / "d" / "l"); });
  Both("rename within the directory", [&](const fs::path& r) {
    if (rename((r / "d" / "l").c_str(), (r / "d" / "m").c_str()) != 0) return errno;
    return expect_link(r / "d" / "m");
  });
  Both("rename to another directory", [&](const fs::path& r) {
    if (rename((r / "d" / "m").c_str(), (r / "e" / "l").c_str()) != 0) return errno;
    return expect_link(r / "e" / "l");
  });
  Both("hard link into another directory", [&](const fs::path& r) {
    if (link((r / "e" / "l").c_str(), (r / "d" / "h").c_str()) != 0) return errno;
    return expect_link(r / "d" / "h");
  });
  Both("unlink one link", [&](const fs::path& r) {
    if (unlink((r / "e" / "l").c_str()) != 0) return errno;
    return expect_link(r / "d" / "h");
  });
  Both("replace it by a rename", [&](const fs::path& r) {
    WriteFile(r / "d" / "new", "x");
    if (rename((r / "d" / "new").c_str(), (r / "d" / "h").c_str()) != 0) return errno;
    return ReadFile(r / "d" / "h") == "x" ? 0 : EIO;
  });
  Both("symlink of 4096 bytes", [&](const fs::path& r) {
    return Err(symlink((target + "x").c_str(), (r / "d" / "t").c_str()));
  });
  Both("the failed symlink left nothing", [](const fs::path& r) {
    struct stat st;
    return lstat((r / "d" / "t").c_str(), &st) == 0 ? EEXIST : 0;
  });
}

TEST_F(PosixLimits, A8GiBSparseFileWrittenPast4GiBStaysSparse) {
  const off_t kAt = (off_t{8} << 30) - 4096;
  Both("pwrite at 8 GiB", [&](const fs::path& r) {
    int fd = open((r / "sparse").c_str(), O_CREAT | O_RDWR, 0644);
    if (fd < 0) return errno;
    std::string block(4096, 's');
    const bool ok = pwrite(fd, block.data(), block.size(), kAt) == 4096 &&
                    pwrite(fd, block.data(), 10, off_t{4} << 30) == 10;
    std::string back(4096, 0);
    const bool read_ok = pread(fd, back.data(), back.size(), kAt) == 4096 && back == block;
    char zero = 1;
    const bool hole_ok = pread(fd, &zero, 1, off_t{1} << 30) == 1 && zero == 0;
    close(fd);
    return ok && read_ok && hole_ok ? 0 : EIO;
  });
  struct stat st;
  ASSERT_EQ(0, stat((v_ / "sparse").c_str(), &st));
  EXPECT_EQ(off_t{8} << 30, st.st_size);
  const fs::path cipher = CipherOf(v_, v_ / "sparse");
  ASSERT_EQ(0, stat(cipher.c_str(), &st));
  EXPECT_LT(st.st_blocks * 512, 16 << 20) << "the cipher file is not sparse";
}

TEST_F(PosixLimits, AFailedOperationChangesNothing) {
  Both("setup", [](const fs::path& r) {
    fs::create_directories(r / "full" / "inner");
    fs::create_directory(r / "empty");
    WriteFile(r / "file", "contents");
    return 0;
  });
  Both("rename a dir over a non-empty dir",
       [](const fs::path& r) { return Err(rename((r / "empty").c_str(), (r / "full").c_str())); });
  Both("rename a file over a dir",
       [](const fs::path& r) { return Err(rename((r / "file").c_str(), (r / "empty").c_str())); });
  Both("rename a dir into itself", [](const fs::path& r) {
    return Err(rename((r / "full").c_str(), (r / "full" / "inner" / "x").c_str()));
  });
  Both("rmdir a non-empty dir", [](const fs::path& r) { return Err(rmdir((r / "full").c_str())); });
  Both("unlink a dir", [](const fs::path& r) { return Err(unlink((r / "empty").c_str())); });
  Both("link a dir",
       [](const fs::path& r) { return Err(link((r / "empty").c_str(), (r / "l").c_str())); });
  Both("mkdir over a file",
       [](const fs::path& r) { return Err(mkdir((r / "file").c_str(), 0755)); });
  Both("O_EXCL over a file",
       [](const fs::path& r) { return OpenErr(r / "file", O_CREAT | O_EXCL | O_WRONLY); });
  Both("open a dir for writing", [](const fs::path& r) { return OpenErr(r / "empty", O_WRONLY); });
  Both("truncate a dir", [](const fs::path& r) { return Err(truncate((r / "empty").c_str(), 0)); });
  Both("a file as a directory",
       [](const fs::path& r) { return OpenErr(r / "file" / "x", O_CREAT | O_WRONLY); });
  Both("rmdir .", [](const fs::path& r) { return Err(rmdir((r / "empty" / ".").c_str())); });
  Both("everything is as it was", [](const fs::path& r) {
    const bool same = fs::is_directory(r / "full" / "inner") && fs::is_empty(r / "empty") &&
                      ReadFile(r / "file") == "contents" && !fs::exists(r / "l") &&
                      !fs::exists(r / "full" / "inner" / "x");
    return same ? 0 : EAGAIN;
  });
}

TEST_F(PosixLimits, AHundredThousandEntriesInOneDirectory) {
  constexpr int kEntries = 100000;
  for (const fs::path& root : {v_.mnt(), ref_}) {
    fs::create_directory(root / "big");
    for (int i = 0; i < kEntries; ++i) {
      const fs::path p = root / "big" / ("part-" + std::to_string(i) + ".csv");
      int fd = open(p.c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
      ASSERT_GE(fd, 0) << p << ": " << std::strerror(errno);
      close(fd);
    }
  }
  size_t listed = 0;
  for (const auto& e : fs::directory_iterator(v_ / "big")) listed += e.is_regular_file();
  EXPECT_EQ(static_cast<size_t>(kEntries), listed);
  Both("lookup of the last", [&](const fs::path& r) {
    struct stat st;
    return Err(stat((r / "big" / ("part-" + std::to_string(kEntries - 1) + ".csv")).c_str(), &st));
  });
  Both("rm -rf", [&](const fs::path& r) {
    std::error_code ec;
    fs::remove_all(r / "big", ec);
    return ec.value();
  });
}

// Each open file costs the daemon one descriptor (its cipher file's): inodes are kept as file
// handles, so 10,000 open files fit in a limit of 20,000 (this machine's).
TEST_F(PosixLimits, TenThousandFilesOpenAtOnce) {
  constexpr int kFiles = 10000;
  struct rlimit limit;
  ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &limit));
  if (limit.rlim_max < kFiles + 1000) GTEST_SKIP() << "the hard descriptor limit is too low";
  const struct rlimit raised = {limit.rlim_max, limit.rlim_max};
  ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &raised));
  std::vector<int> fds;
  int failure = 0;
  size_t daemon_peak = 0;
  for (int i = 0; i < kFiles; ++i) {
    const fs::path p = v_ / ("open-" + std::to_string(i));
    int fd = open(p.c_str(), O_CREAT | O_RDWR, 0644);
    if (fd < 0) {
      failure = errno;
      break;
    }
    fds.push_back(fd);
    const std::string data = "file " + std::to_string(i) + "\n";
    EXPECT_EQ(static_cast<ssize_t>(data.size()), write(fd, data.data(), data.size()));
  }
  daemon_peak = DescriptorsOf(v_.pid());
  for (size_t i = 0; i < fds.size(); ++i) {
    char buf[32] = {};
    const std::string want = "file " + std::to_string(i) + "\n";
    EXPECT_EQ(static_cast<ssize_t>(want.size()), pread(fds[i], buf, sizeof buf, 0));
    EXPECT_EQ(want, std::string(buf, want.size()));
  }
  for (int fd : fds) close(fd);
  setrlimit(RLIMIT_NOFILE, &limit);
  WriteFile(v_ / "after", "still working");
  EXPECT_EQ("still working", ReadFile(v_ / "after"));
  if (failure != 0) {
    EXPECT_EQ(EMFILE, failure) << std::strerror(failure);
    // Without file handles (the daemon is not root) an open file costs two descriptors.
    if (Contains(v_.DaemonLog(), "no file handles") && limit.rlim_max < 2 * kFiles + 100) {
      GTEST_SKIP() << fds.size() << " files opened: the daemon's descriptor limit ("
                   << limit.rlim_max << ") allows no more without file handles";
    }
    ADD_FAILURE() << "only " << fds.size() << " files opened";
  }
  EXPECT_EQ("file 9999\n", ReadFile(v_ / "open-9999"));
  // One descriptor per open file and a few dozen more; after the last close, the files are
  // sealed and their descriptors closed (--seal-interval 1).
  EXPECT_LT(daemon_peak, static_cast<size_t>(kFiles) + 200);
  size_t after = DescriptorsOf(v_.pid());
  for (int i = 0; i < 100 && after >= 200; ++i) {
    usleep(100 * 1000);
    after = DescriptorsOf(v_.pid());
  }
  EXPECT_LT(after, 200u) << "descriptors of closed files stay open";
}

}  // namespace
}  // namespace envelopefs::testing
