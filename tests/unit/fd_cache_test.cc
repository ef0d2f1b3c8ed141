// Unit tests of the daemon's descriptor cache (FdCache) and of inodes kept as file handles
// (InodeTable with EnableHandles): bounded, least recently used first out, and a lease keeps its
// descriptor open after eviction; a handle reopens its object after a rename and is ENOENT once
// the object is gone.
#include "fd_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "backing_handle.h"
#include "common/temp_dir.h"
#include "inode_table.h"

namespace envelopefs {
namespace {

std::shared_ptr<const UniqueFd> SomeFd() {
  return std::make_shared<const UniqueFd>(open("/", O_PATH | O_CLOEXEC));
}

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(FdCache, KeepsTheMostRecentlyUsedUpToItsCapacity) {
  FdCache cache(2);
  FdCache::Slot a, b, c;
  cache.Insert(a, SomeFd());
  cache.Insert(b, SomeFd());
  EXPECT_NE(nullptr, cache.Find(a));  // a is now the most recent
  cache.Insert(c, SomeFd());          // evicts b
  EXPECT_EQ(2u, cache.size());
  EXPECT_NE(nullptr, cache.Find(a));
  EXPECT_EQ(nullptr, cache.Find(b));
  EXPECT_NE(nullptr, cache.Find(c));
  cache.Remove(a);
  cache.Remove(c);
  EXPECT_EQ(0u, cache.size());
}

TEST(FdCache, ALeaseKeepsAnEvictedDescriptorOpen) {
  FdCache cache(1);
  FdCache::Slot a, b;
  std::shared_ptr<const UniqueFd> lease = cache.Insert(a, SomeFd());
  const int fd = lease->get();
  cache.Insert(b, SomeFd());  // evicts a's
  EXPECT_EQ(nullptr, cache.Find(a));
  EXPECT_TRUE(IsOpen(fd));
  lease.reset();
  EXPECT_FALSE(IsOpen(fd));
  cache.Remove(b);
}

TEST(FdCache, ASecondInsertKeepsTheFirstDescriptor) {
  FdCache cache(4);
  FdCache::Slot a;
  auto first = cache.Insert(a, SomeFd());
  auto second = cache.Insert(a, SomeFd());
  EXPECT_EQ(first, second);
  EXPECT_EQ(1u, cache.size());
  cache.Remove(a);
}

TEST(FdCache, NothingIsKeptWithCapacityZero) {
  FdCache cache(0);
  FdCache::Slot a;
  auto fd = SomeFd();
  EXPECT_EQ(fd, cache.Insert(a, fd));
  EXPECT_EQ(nullptr, cache.Find(a));
}

// File handles need CAP_DAC_READ_SEARCH and a file system that has them.
class HandleInodes : public ::testing::Test {
 protected:
  void SetUp() override {
    root_.reset(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
    int mount_id = -1;
    const std::string why_not = ProbeFileHandles(root_.get(), &mount_id);
    if (!why_not.empty()) GTEST_SKIP() << "no file handles here: " << why_not;
    struct stat st;
    ASSERT_EQ(0, fstat(root_.get(), &st));
    table_.EnableHandles(root_.get(), st.st_dev, mount_id, 1);
  }

  Inode* Look(const std::string& name, InodeFd* lease = nullptr) {
    UniqueFd fd(openat(root_.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << name;
    struct stat st;
    EXPECT_EQ(0, fstat(fd.get(), &st));
    return table_.FindOrInsert(std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT, lease);
  }

  testing::TempDir tmp_{"fdcache"};
  const std::string dir_ = tmp_.path().string();
  UniqueFd root_;
  InodeTable table_;
};

TEST_F(HandleInodes, PinNoDescriptorAndReopenAfterARenameUntilDeleted) {
  close(openat(root_.get(), "a", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  close(openat(root_.get(), "b", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  InodeFd lease_a;
  Inode* a = Look("a", &lease_a);
  Inode* b = Look("b");  // evicts a's descriptor from the one-entry cache
  EXPECT_EQ(0u, table_.pinned());
  EXPECT_TRUE(IsOpen(lease_a.get()));  // still leased
  ASSERT_EQ(0, renameat(root_.get(), "a", root_.get(), "moved"));
  InodeFd again;
  ASSERT_EQ(0, table_.Use(*a, &again));  // opened by its handle
  struct stat by_handle, by_name;
  ASSERT_EQ(0, fstatat(again.get(), "", &by_handle, AT_EMPTY_PATH));
  ASSERT_EQ(0, fstatat(root_.get(), "moved", &by_name, 0));
  EXPECT_EQ(by_name.st_ino, by_handle.st_ino);
  // Hard links: one inode, one handle.
  ASSERT_EQ(0, linkat(root_.get(), "b", root_.get(), "b2", 0));
  EXPECT_EQ(b, Look("b2"));
  // Deleted (and no descriptor left open): ENOENT, not a crash.
  again = InodeFd();
  lease_a = InodeFd();
  Look("b");  // evicts a's descriptor
  ASSERT_EQ(0, unlinkat(root_.get(), "moved", 0));
  InodeFd gone;
  EXPECT_EQ(ENOENT, table_.Use(*a, &gone));
  EXPECT_EQ(-1, gone.get());
}

}  // namespace
}  // namespace envelopefs
