// Unit tests of the daemon's InodeTable: one Inode per backing object (also when an inode number
// is reused), lookup counting, the idle entries offered for forgetting, and the over-budget
// callback.
#include "inode_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "common/temp_dir.h"
#include "inode_number_reuse.h"

namespace envelopefs {
namespace {

UniqueFd SomeFd() { return UniqueFd(open("/", O_PATH | O_CLOEXEC)); }

TEST(InodeTable, OneInodePerBackingObjectWithItsLookupsCounted) {
  InodeTable table;
  Inode* a = table.FindOrInsert(SomeFd(), 1, 10, S_IFREG);
  Inode* again = table.FindOrInsert(SomeFd(), 1, 10, S_IFREG);  // its fd is closed
  Inode* other_dev = table.FindOrInsert(SomeFd(), 2, 10, S_IFREG);
  EXPECT_EQ(a, again);
  EXPECT_NE(a, other_dev);
  EXPECT_EQ(2u, a->nlookup.load());
  EXPECT_EQ(2u, table.size());
  table.Forget(a, 1);
  EXPECT_EQ(2u, table.size());
  table.Forget(a, 1);  // the last lookup: freed
  EXPECT_EQ(1u, table.size());
}

TEST(InodeTable, IdleEntriesAreNamedCachedObjectsNoOneHasOpen) {
  InodeTable table;
  auto add = [&](ino_t ino, mode_t type, const char* name) {
    Inode* inode = table.FindOrInsert(SomeFd(), 1, ino, type);
    inode->parent_is_root = true;
    inode->name = name;
    return inode;
  };
  add(1, S_IFREG, "file");
  add(2, S_IFDIR, "dir");
  add(3, S_IFLNK, "link");
  Inode* unnamed = table.FindOrInsert(SomeFd(), 1, 4, S_IFREG);  // never looked up by name
  (void)unnamed;
  Inode* root = add(5, S_IFDIR, "root");
  root->is_root = true;
  add(6, S_IFIFO, "fifo");  // holds no descriptor worth freeing
  std::set<std::string> names;
  for (auto& [parent, name] : table.IdleEntries(100)) {
    EXPECT_EQ(FUSE_ROOT_ID, parent);
    names.insert(name);
  }
  EXPECT_EQ((std::set<std::string>{"file", "dir", "link"}), names);
}

TEST(InodeTable, IdleEntriesResumeWhereTheyStopped) {
  InodeTable table;
  for (ino_t i = 1; i <= 10; ++i) {
    Inode* inode = table.FindOrInsert(SomeFd(), 1, i, S_IFREG);
    inode->parent_is_root = true;
    inode->name = "f" + std::to_string(i);
  }
  std::set<std::string> seen;
  for (int round = 0; round < 5; ++round) {
    auto batch = table.IdleEntries(2);
    EXPECT_EQ(2u, batch.size());
    for (auto& [parent, name] : batch) seen.insert(name);
  }
  EXPECT_EQ(10u, seen.size());  // the kernel kept them all, yet every entry was offered
}

TEST(InodeTable, GoingOverTheWatchedSizeCallsBack) {
  InodeTable table;
  int calls = 0;
  table.WatchSize(2, [&] { ++calls; });
  table.FindOrInsert(SomeFd(), 1, 1, S_IFREG);
  table.FindOrInsert(SomeFd(), 1, 2, S_IFREG);
  EXPECT_EQ(0, calls);
  table.FindOrInsert(SomeFd(), 1, 2, S_IFREG);  // no new inode
  EXPECT_EQ(0, calls);
  table.FindOrInsert(SomeFd(), 1, 3, S_IFREG);
  EXPECT_EQ(1, calls);
}

// A backing file deleted behind the daemon's back whose inode number the file system gives to a
// new file: the cached Inode (kept by file handle, holding no descriptor) must not stand for the
// new file, and must live until the kernel forgets it.
TEST(InodeTable, AReusedInodeNumberGetsANewInodeAndTheStaleOneLivesUntilForgotten) {
  testing::TempDir tmp("envelopefs-inode-table");
  const std::filesystem::path dir = tmp.path();
  UniqueFd root(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(root.valid());
  int mount_id = -1;
  if (std::string why = ProbeFileHandles(root.get(), &mount_id); !why.empty()) {
    GTEST_SKIP() << "no file handles here: " << why;
  }
  struct stat st;
  ASSERT_EQ(0, fstat(root.get(), &st));
  InodeTable table;
  table.EnableHandles(root.get(), st.st_dev, mount_id, /*cache=*/0);
  auto lookup = [&](const std::filesystem::path& path) {
    UniqueFd fd(open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat fst;
    EXPECT_EQ(0, fstat(fd.get(), &fst));
    return table.FindOrInsert(std::move(fd), fst.st_dev, fst.st_ino, S_IFREG);
  };

  UniqueFd made(open((dir / "old").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(made.valid());
  made.reset();
  Inode* old_inode = lookup(dir / "old");
  const ino_t number = old_inode->ino;
  ASSERT_EQ(0, unlink((dir / "old").c_str()));
  const std::filesystem::path reused = testing::CreateFileWithInodeNumber(dir, number);
  if (reused.empty()) GTEST_SKIP() << "the file system did not reuse inode number " << number;

  Inode* new_inode = lookup(reused);
  ASSERT_NE(old_inode, new_inode);
  EXPECT_EQ(number, new_inode->ino);
  EXPECT_EQ(2u, table.size());  // the stale one waits for the kernel's forget
  InodeFd lease;
  EXPECT_EQ(ENOENT, table.Use(*old_inode, &lease));
  ASSERT_EQ(0, table.Use(*new_inode, &lease));
  ASSERT_EQ(0, fstat(lease.get(), &st));
  EXPECT_EQ(number, st.st_ino);
  EXPECT_EQ(new_inode, lookup(reused));  // the same object again: the same inode

  table.Forget(old_inode, 1);  // frees the stale one, not the new one
  EXPECT_EQ(1u, table.size());
  EXPECT_EQ(new_inode, lookup(reused));
  EXPECT_EQ(3u, new_inode->nlookup.load());
  table.Forget(new_inode, 3);
  EXPECT_EQ(0u, table.size());
}

}  // namespace
}  // namespace envelopefs
