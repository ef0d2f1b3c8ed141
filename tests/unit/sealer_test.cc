// Unit tests of the daemon's Sealer: closed files get their sealed record after their data is
// flushed, on Flush, early when too many wait, and at destruction; a seal keeps the modification
// time and reports the change time it caused.
#include "sealer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "envelopefs/shown_ctime.h"
#include "temp_volume.h"

namespace envelopefs::testing {
namespace {

constexpr struct timespec kOld = {1672480800, 5};

class SealerTest : public ::testing::Test {
 protected:
  // A file with data, changed through this object, with an old modification time.
  std::shared_ptr<CipherFile> Changed(const std::string& name) {
    auto file = v_.Create(name);
    EXPECT_EQ(5, TempVolume::Write(*file, "hello", 0));
    const struct timespec times[2] = {{0, UTIME_OMIT}, kOld};
    EXPECT_EQ(0, file->SetTimes(times));
    return file;
  }

  TempVolume v_;
};

TEST_F(SealerTest, FlushSealsAndKeepsTheModificationTime) {
  auto file = Changed("a");
  ASSERT_FALSE(file->sealed());
  ASSERT_TRUE(file->NeedsSeal());
  Sealer sealer(3600, 16);
  sealer.Enqueue(file);
  sealer.Flush();
  EXPECT_TRUE(file->sealed());
  EXPECT_FALSE(file->NeedsSeal());
  struct stat st;
  ASSERT_EQ(0, stat(v_.Path("a").c_str(), &st));
  EXPECT_EQ(kOld.tv_sec, st.st_mtim.tv_sec);
  EXPECT_EQ(kOld.tv_nsec, st.st_mtim.tv_nsec);
  file.reset();
  EXPECT_TRUE(v_.Open("a")->sealed());  // a sealed file reopens: its record matches the disk
}

TEST_F(SealerTest, AFileChangedAfterItsCountWasTakenIsNotSealed) {
  auto file = Changed("a");
  const uint64_t count = file->ModificationCount();
  ASSERT_EQ(1, TempVolume::Write(*file, "!", 5));
  EXPECT_EQ(0, file->SealIfUnchanged(count));
  EXPECT_FALSE(file->sealed());  // the record would not cover the newer write
  EXPECT_EQ(0, file->SealIfUnchanged(file->ModificationCount()));
  EXPECT_TRUE(file->sealed());
}

TEST_F(SealerTest, ManyWaitingFilesAreSealedWithoutWaitingForTheInterval) {
  Sealer sealer(3600, 4);
  std::vector<std::shared_ptr<CipherFile>> files;
  for (int i = 0; i < 4; ++i) {
    files.push_back(Changed("f" + std::to_string(i)));
    sealer.Enqueue(files.back());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!files.back()->sealed() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& f : files) EXPECT_TRUE(f->sealed());
}

TEST_F(SealerTest, DestructionSealsWhatIsWaiting) {
  auto file = Changed("a");
  {
    Sealer sealer(3600, 16);
    sealer.Enqueue(file);
  }
  EXPECT_TRUE(file->sealed());
}

TEST_F(SealerTest, ABurstLargerThanAChunkIsSealedWithEveryFlushedFile) {
  Sealer sealer(3600, 1024);
  std::vector<std::shared_ptr<CipherFile>> files;
  for (size_t i = 0; i < Sealer::kChunk * 2 + 7; ++i) {
    files.push_back(Changed("f" + std::to_string(i)));
    sealer.Enqueue(files.back());
  }
  sealer.Flush();
  for (auto& f : files) EXPECT_TRUE(f->sealed());
}

// More closed files than the sealer lets wait: Enqueue waits for the sealer's thread to flush
// (no interval passes here) instead of piling up descriptors, and every file ends up sealed.
TEST_F(SealerTest, EnqueueWaitsForTheSealerWhenTooManyFilesWait) {
  Sealer sealer(3600, 4);
  std::vector<std::shared_ptr<CipherFile>> files;
  for (int i = 0; i < 40; ++i) files.push_back(Changed("f" + std::to_string(i)));
  for (auto& f : files) sealer.Enqueue(f);  // would hang if nothing drained the queue
  sealer.Flush();
  for (auto& f : files) EXPECT_TRUE(f->sealed());
}

// A seal is a header-only rewrite: the change time the mount shows stays the one before it
// (shown_ctime.h), until the file really changes again.
TEST_F(SealerTest, ASealKeepsTheChangeTimeTheFileShows) {
  auto file = Changed("a");
  struct stat before;
  ASSERT_EQ(0, fstat(file->fd(), &before));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a visible change time step
  ASSERT_EQ(0, file->Sync());
  struct stat after;
  ASSERT_EQ(0, fstat(file->fd(), &after));
  EXPECT_FALSE(SameTime(before.st_ctim, after.st_ctim));  // the backing ctime moved
  EXPECT_TRUE(SameTime(before.st_ctim, ReadShownCtime(file->fd(), after)));
  EXPECT_EQ(kOld.tv_sec, after.st_mtim.tv_sec);

  // A write right after the seal is a change of its own: the backing ctime shows again.
  const uint8_t byte = 'x';
  ASSERT_EQ(1, file->Write({&byte, 1}, 0));
  struct stat changed;
  ASSERT_EQ(0, fstat(file->fd(), &changed));
  EXPECT_TRUE(SameTime(changed.st_ctim, ReadShownCtime(file->fd(), changed)));
  EXPECT_FALSE(SameTime(before.st_ctim, changed.st_ctim));
}

}  // namespace
}  // namespace envelopefs::testing
