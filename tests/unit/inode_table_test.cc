// Unit tests of the daemon's InodeTable: one Inode per backing object, lookup counting, the
// idle entries offered for forgetting, and the over-budget callback.
#include "inode_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

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
    inode->parent = FUSE_ROOT_ID;
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
    inode->parent = FUSE_ROOT_ID;
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

}  // namespace
}  // namespace envelopefs
