// Files opened with O_DIRECT: served through the kernel's direct_io path (one round trip per
// write), coherent with the page cache of other opens, durable and readable after a remount, and
// set-ID bits cleared on a write by another user, as for any write through FUSE.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

constexpr size_t kBlock = 4096;

// A 4 KiB-aligned buffer, as O_DIRECT on a local file system needs it.
struct AlignedBlock {
  AlignedBlock() { ptr = static_cast<char*>(std::aligned_alloc(kBlock, kBlock)); }
  ~AlignedBlock() { std::free(ptr); }
  char* ptr;
};

std::string PreadAll(int fd, size_t size) {
  std::string out(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, out.data() + done, size - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

TEST(DirectIo, RandomWritesStayCoherentWithBufferedOpensAndSurviveARemount) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const fs::path f = v / "table.db";
  std::string model = RandomString(64 * kBlock, 1);
  WriteFile(f, model);

  int buffered = open(f.c_str(), O_RDWR);
  ASSERT_GE(buffered, 0);
  ASSERT_EQ(model, PreadAll(buffered, model.size()));  // now in the page cache
  int direct = open(f.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(direct, 0) << strerror(errno);

  AlignedBlock block;
  std::mt19937 rng(7);
  for (int i = 0; i < 64; ++i) {
    // Blocks inside the file, and from the 48th write on also past its end (it grows).
    const size_t blocks = model.size() / kBlock + (i >= 48 ? 2 : 0);
    const size_t off = (rng() % blocks) * kBlock;
    std::string data = RandomString(kBlock, 100 + static_cast<uint32_t>(i));
    std::memcpy(block.ptr, data.data(), kBlock);
    ASSERT_EQ(static_cast<ssize_t>(kBlock), pwrite(direct, block.ptr, kBlock, off))
        << strerror(errno);
    if (model.size() < off + kBlock) model.resize(off + kBlock, '\0');
    model.replace(off, kBlock, data);
    // The other open sees the write at once: the kernel dropped its cached pages.
    ASSERT_EQ(data, PreadAll(buffered, model.size()).substr(off, kBlock)) << "write " << i;
  }
  EXPECT_EQ(model, PreadAll(buffered, model.size()));
  ASSERT_EQ(static_cast<ssize_t>(kBlock), pread(direct, block.ptr, kBlock, 0));
  EXPECT_EQ(model.substr(0, kBlock), std::string(block.ptr, kBlock));

  // A buffered write is seen by an O_DIRECT read.
  const std::string patch = RandomString(kBlock, 999);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), pwrite(buffered, patch.data(), kBlock, 3 * kBlock));
  model.replace(3 * kBlock, kBlock, patch);
  ASSERT_EQ(static_cast<ssize_t>(kBlock), pread(direct, block.ptr, kBlock, 3 * kBlock));
  EXPECT_EQ(patch, std::string(block.ptr, kBlock));
  struct stat st;
  ASSERT_EQ(0, fstat(direct, &st));
  EXPECT_EQ(static_cast<off_t>(model.size()), st.st_size);
  close(direct);
  close(buffered);

  v.Unmount();
  v.Mount();
  EXPECT_EQ(model, ReadFile(f));
}

TEST(DirectIo, PrivateMapsWorkAndSharedMapsAreRefused) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const fs::path f = v / "m";
  WriteFile(f, RandomString(2 * kBlock, 5));
  int fd = open(f.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, 2 * kBlock, PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(MAP_FAILED, p) << strerror(errno);
  EXPECT_EQ(RandomString(2 * kBlock, 5), std::string(static_cast<char*>(p), 2 * kBlock));
  munmap(p, 2 * kBlock);
  // libfuse 3.14 cannot ask for FUSE_DIRECT_IO_ALLOW_MMAP (envelopefs(1) says so).
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, kBlock, PROT_READ, MAP_SHARED, fd, 0));
  EXPECT_EQ(ENODEV, errno);
  close(fd);
}

int WriteDirect(const char* name) {
  alignas(kBlock) static char block[kBlock];
  int fd = open(name, O_WRONLY | O_DIRECT);
  if (fd < 0) return errno;
  int rc = pwrite(fd, block, kBlock, 0) == static_cast<ssize_t>(kBlock) ? 0 : errno;
  close(fd);
  return rc;
}

// A write by a user other than root clears the set-user-ID bit, and the set-group-ID bit of a
// group-executable file, as the kernel does for any write through FUSE (ext4 since Linux 6.2
// also clears the set-group-ID bit of a file that is not group-executable when the writer is
// not in its group; FUSE keeps it); root keeps them. A file with the bits when it is opened
// is written through the kernel's buffered path, which clears them itself.
TEST(DirectIo, AWriteByAnotherUserClearsSetIdBitsAsThroughAnyFuseWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  MountedVolume v(VolumeOptions{"", "-o allow_other"});
  ASSERT_MOUNTED(v);
  ASSERT_EQ(0, chmod(v.mnt().c_str(), 0755));
  for (const char* name : {"suid", "sgid_exec", "sgid_noexec", "by_root"}) {
    WriteFile(v / name, std::string(kBlock, 'x'));
  }
  ASSERT_EQ(0, chmod((v / "suid").c_str(), 04777));
  ASSERT_EQ(0, chmod((v / "sgid_exec").c_str(), 02777));
  ASSERT_EQ(0, chmod((v / "sgid_noexec").c_str(), 02767));
  ASSERT_EQ(0, chmod((v / "by_root").c_str(), 06777));

  EXPECT_EQ(0, AsNobody(v.mnt(), [] { return WriteDirect("suid"); }));
  EXPECT_EQ(0, AsNobody(v.mnt(), [] { return WriteDirect("sgid_exec"); }));
  EXPECT_EQ(0, AsNobody(v.mnt(), [] { return WriteDirect("sgid_noexec"); }));
  EXPECT_EQ(0, WriteDirect((v / "by_root").c_str()));  // CAP_FSETID keeps them

  struct stat st;
  ASSERT_EQ(0, stat((v / "suid").c_str(), &st));
  EXPECT_EQ(0777u, st.st_mode & 07777);
  ASSERT_EQ(0, stat((v / "sgid_exec").c_str(), &st));
  EXPECT_EQ(0777u, st.st_mode & 07777);
  ASSERT_EQ(0, stat((v / "sgid_noexec").c_str(), &st));
  EXPECT_EQ(02767u, st.st_mode & 07777);
  ASSERT_EQ(0, stat((v / "by_root").c_str(), &st));
  EXPECT_EQ(06777u, st.st_mode & 07777);
  EXPECT_EQ(std::string(kBlock, '\0'), ReadFile(v / "suid"));
}

// The bits set after an O_DIRECT open (here by the file's owner through the open descriptor)
// are cleared by the daemon before the next write through it.
TEST(DirectIo, SetIdBitsGivenAfterTheOpenAreClearedOnTheNextWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  MountedVolume v(VolumeOptions{"", "-o allow_other"});
  ASSERT_MOUNTED(v);
  ASSERT_EQ(0, chmod(v.mnt().c_str(), 0777));
  EXPECT_EQ(0, AsNobody(v.mnt(), [] {
              alignas(kBlock) static char block[kBlock];
              int fd = open("own", O_RDWR | O_CREAT | O_DIRECT, 0644);
              if (fd < 0) return errno;
              int rc = 0;
              if (fchmod(fd, 06755) != 0) rc = errno;  // the owner may set both
              if (rc == 0 && pwrite(fd, block, kBlock, 0) != static_cast<ssize_t>(kBlock)) {
                rc = errno;
              }
              close(fd);
              return rc;
            }));
  struct stat st;
  ASSERT_EQ(0, stat((v / "own").c_str(), &st));
  EXPECT_EQ(65534u, st.st_uid);
  EXPECT_EQ(0755u, st.st_mode & 07777);
  EXPECT_EQ(static_cast<off_t>(kBlock), st.st_size);
}

}  // namespace
}  // namespace envelopefs::testing
