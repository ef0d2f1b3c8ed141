// Unit tests of RewrapFiles: DEKs move to the active KEK version without touching the data or
// the modification time, a second run finds nothing to do, and files that are not ours are
// skipped or reported.
#include "envelopefs/rewrap.h"

#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <ctime>
#include <fstream>

#include "envelopefs/cipher_header.h"
#include "temp_volume.h"

namespace envelopefs::testing {
namespace {

KeySlotInfo NewestSlot(const std::filesystem::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  HeaderRead header = ReadHeader(fd.get());
  return header.slots[header.NewestSlot()];
}

TEST(Rewrap, MovesEveryFileToTheActiveVersionKeepingDataAndTimes) {
  TempVolume v;
  for (const char* name : {"a", "b", "c"}) {
    auto file = v.Create(name);
    ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
    ASSERT_EQ(0, file->Sync());
    const struct timespec times[2] = {{0, UTIME_OMIT}, {1672480800, 0}};
    ASSERT_EQ(0, file->SetTimes(times));
  }
  std::ofstream(v.Path("stray.txt")) << "not ours";
  const uint32_t old_version = NewestSlot(v.Path("a")).kek_version;
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  const Volume::KekCopy target = v.volume().ActiveKek();
  ASSERT_NE(old_version, target.info.version);

  const std::vector<std::string> files = {"a", "b", "c", "stray.txt", "missing"};
  RewrapStats first = RewrapFiles(v.volume(), target, files, nullptr, v.damage());
  EXPECT_EQ(5u, first.examined);
  EXPECT_EQ(3u, first.rewrapped);
  EXPECT_EQ(1u, first.skipped);
  EXPECT_EQ(1u, first.failed);  // "missing" cannot be opened
  for (const char* name : {"a", "b", "c"}) {
    EXPECT_EQ(target.info.version, NewestSlot(v.Path(name)).kek_version) << name;
    struct stat st;
    ASSERT_EQ(0, stat(v.Path(name).c_str(), &st));
    EXPECT_EQ(1672480800, st.st_mtim.tv_sec) << name;
    EXPECT_EQ("data", TempVolume::Read(*v.Open(name), 4));
  }
  RewrapStats second =
      RewrapFiles(v.volume(), target, std::span(files.data(), 3), nullptr, v.damage());
  EXPECT_EQ(0u, second.rewrapped);
  EXPECT_EQ(3u, second.already_current);
}

struct timespec ModificationTime(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(0, stat(p.c_str(), &st));
  return st.st_mtim;
}

// A write through a mount between rewrap's two slot writes, in the same clock tick as rewrap's
// own first write (file times are coarse: a few ms), left the modification time as rewrap's
// check expected, and rewrap put the old time back over the write's: backup tools going by
// mtime would have missed the change. Now the times are kept only if the file stayed sealed
// with the same state record, checked under the header lock that an unsealing write takes.
TEST(Rewrap, AWriteBetweenItsSlotWritesKeepsItsModificationTime) {
  TempVolume v;
  auto file = v.Create("a");
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
  ASSERT_EQ(0, file->Sync());
  const struct timespec old_times[2] = {{0, UTIME_OMIT}, {1672480800, 0}};
  auto other = v.Create("b");
  ASSERT_EQ(0, other->Sync());
  other.reset();
  ASSERT_EQ(0, file->SetTimes(old_times));
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  bool wrote = false;
  // Called under the header lock of the file named: the write to "a" is made once rewrap has
  // moved on to "b" (both are in one batch, so before "a"'s second slot).
  auto write_in_between = [&](const std::string& name, RewrapOutcome outcome, const std::string&) {
    if (name != "b" || outcome != RewrapOutcome::kFirstSlotWritten) return;
    const struct timespec after_first_slot = ModificationTime(v.Path("a"));
    ASSERT_EQ(4, TempVolume::Write(*file, std::string("DATA"), 0));
    ASSERT_EQ(0, file->Sync());
    // As if the write fell in the tick of rewrap's own write.
    const struct timespec same_tick[2] = {{0, UTIME_OMIT}, after_first_slot};
    ASSERT_EQ(0, file->SetTimes(same_tick));
    wrote = true;
  };
  const std::vector<std::string> files = {"a", "b"};
  RewrapStats stats =
      RewrapFiles(v.volume(), v.volume().ActiveKek(), files, write_in_between, v.damage());
  ASSERT_TRUE(wrote);
  EXPECT_EQ(2u, stats.rewrapped);
  EXPECT_GT(ModificationTime(v.Path("a")).tv_sec, 1672480800);
  file.reset();
  EXPECT_EQ("DATA", TempVolume::Read(*v.Open("a"), 4));
}

// A file that is not sealed (open and written through a mount) may be written at any moment:
// rewrap leaves it its own time rather than risk setting a write's time back.
TEST(Rewrap, AFileBeingWrittenKeepsTheRewrapsTime) {
  TempVolume v;
  auto file = v.Create("a");
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
  ASSERT_EQ(0, file->Sync());
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("more"), 4));  // unsealed on disk
  const struct timespec old_times[2] = {{0, UTIME_OMIT}, {1672480800, 0}};
  ASSERT_EQ(0, file->SetTimes(old_times));
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  const std::vector<std::string> files = {"a"};
  RewrapStats stats = RewrapFiles(v.volume(), v.volume().ActiveKek(), files, nullptr, v.damage());
  EXPECT_EQ(1u, stats.rewrapped);
  EXPECT_GT(ModificationTime(v.Path("a")).tv_sec, 1672480800);
  ASSERT_EQ(0, file->Sync());
  file.reset();
  EXPECT_EQ("datamore", TempVolume::Read(*v.Open("a"), 8));
}

// A hard link as the name that fills a batch: rewrap finished the batch while it still held
// the lock of that name's open file, and then waited for the lock of the same inode through
// the earlier name, forever (and with it the daemon's next write to the file). Now phase 1's
// lock is released first. (That the link's slot rewritten under the first name is synced
// before its other slot is overwritten cannot be seen without a crash: rewrap.cc's ctime check.)
// Times out (ctest) rather than hangs if it comes back.
TEST(Rewrap, AHardLinkInTheBatchDoesNotHang) {
  TempVolume v;
  auto file = v.Create("f0");
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
  ASSERT_EQ(0, file->Sync());
  file.reset();
  std::vector<std::string> files = {"f0"};
  for (size_t i = 1; i + 1 < kRewrapBatch; ++i) {
    files.push_back("f" + std::to_string(i));
    std::filesystem::copy_file(v.Path("f0"), v.Path(files.back()));
  }
  ASSERT_EQ(0, link(v.Path("f0").c_str(), v.Path("link").c_str()));
  files.push_back("link");  // fills the batch
  ASSERT_EQ(kRewrapBatch, files.size());
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  const Volume::KekCopy target = v.volume().ActiveKek();
  RewrapStats stats = RewrapFiles(v.volume(), target, files, nullptr, v.damage());
  EXPECT_EQ(0u, stats.failed);
  EXPECT_EQ(kRewrapBatch - 1, stats.rewrapped);  // the link's second slot was f0's
  EXPECT_EQ(1u, stats.already_current);
  for (const std::string& name : {std::string("f0"), std::string("f7"), std::string("link")}) {
    UniqueFd fd(open(v.Path(name).c_str(), O_RDONLY | O_CLOEXEC));
    HeaderRead header = ReadHeader(fd.get());
    for (int slot = 0; slot < 2; ++slot) {
      EXPECT_EQ(target.info.version, header.slots[slot].kek_version) << name << " " << slot;
    }
    EXPECT_EQ("data", TempVolume::Read(*v.Open(name), 4));
  }
}

// Anyone who can open a cipher file can flock it. A lock held for good makes rewrap leave the
// file (after 10 s) and the daemon's write go ahead (after 5 s) instead of waiting forever.
TEST(Rewrap, AHeaderLockHeldByAnotherProcessIsWaitedForOnlySoLong) {
  TempVolume v;
  auto file = v.Create("a");
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
  ASSERT_EQ(0, file->Sync());
  UniqueFd squatter(open(v.Path("a").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(0, flock(squatter.get(), LOCK_EX));
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("more"), 4));  // unseals: waits, goes on
  ASSERT_EQ(0, file->Sync());
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  std::string why;
  auto on_file = [&](const std::string&, RewrapOutcome outcome, const std::string& reason) {
    if (outcome == RewrapOutcome::kFailed) why = reason;
  };
  const std::vector<std::string> files = {"a"};
  RewrapStats stats = RewrapFiles(v.volume(), v.volume().ActiveKek(), files, on_file, v.damage());
  EXPECT_EQ(1u, stats.failed);
  EXPECT_NE(std::string::npos, why.find("header lock")) << why;
  squatter.reset();
  stats = RewrapFiles(v.volume(), v.volume().ActiveKek(), files, on_file, v.damage());
  EXPECT_EQ(1u, stats.rewrapped);
  file.reset();
  EXPECT_EQ("datamore", TempVolume::Read(*v.Open("a"), 8));
}

std::string ReadRange(const std::filesystem::path& p, size_t offset, size_t n) {
  return Slurp(p).substr(offset, n);
}
void WriteRange(const std::filesystem::path& p, size_t offset, const std::string& bytes) {
  UniqueFd fd(open(p.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_EQ(static_cast<ssize_t>(bytes.size()),
            pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)));
}

// A truncation to zero gives the file a fresh DEK under the header lock. If someone holds the
// lock for good (a stopped rewrap may be about to write a slot of the DEK in use), it fails
// with EBUSY and changes nothing, rather than wait forever or write beside that slot.
TEST(Rewrap, ATruncationToZeroNeverGoesAheadWithoutTheHeaderLock) {
  TempVolume v;
  auto file = v.Create("a");
  ASSERT_EQ(4, TempVolume::Write(*file, std::string("data"), 0));
  ASSERT_EQ(0, file->Sync());
  const std::string header = ReadRange(v.Path("a"), 0, 512);
  {
    UniqueFd squatter(open(v.Path("a").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(0, flock(squatter.get(), LOCK_EX));
    EXPECT_EQ(-EBUSY, file->Truncate(0));
  }
  EXPECT_EQ(header, ReadRange(v.Path("a"), 0, 512));
  EXPECT_EQ("data", TempVolume::Read(*file, 4));
  EXPECT_EQ(0, file->Truncate(0));                                     // once the lock is free
  EXPECT_NE(header.substr(64, 192), ReadRange(v.Path("a"), 64, 192));  // a fresh DEK
}

TEST(Rewrap, NeverOverwritesAKeySlotWhenTheSlotsHoldDifferentDataKeys) {
  // An attacker puts back an old key slot and the old state records after a truncation to
  // zero gave the file a new DEK: the file reads as EIO, and rewrap must not overwrite the
  // only copy of the new DEK with the old one.
  TempVolume v;
  auto file = v.Create("f");
  ASSERT_EQ(3, TempVolume::Write(*file, "old", 0));
  ASSERT_EQ(0, file->Sync());
  const std::string old_header = ReadRange(v.Path("f"), 0, 512);
  ASSERT_EQ(0, file->Truncate(0));  // a fresh DEK
  ASSERT_EQ(8, TempVolume::Write(*file, "new data", 0));
  ASSERT_EQ(0, file->Sync());
  file.reset();
  const std::string new_states = ReadRange(v.Path("f"), 256, 256);
  WriteRange(v.Path("f"), 160, old_header.substr(160, 352));  // key slot 1 and the states
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  const std::vector<std::string> files = {"f"};
  RewrapStats stats = RewrapFiles(v.volume(), v.volume().ActiveKek(), files, nullptr, v.damage());
  EXPECT_EQ(1u, stats.failed);
  EXPECT_EQ(0u, stats.rewrapped);
  ASSERT_FALSE(v.damage().damaged().empty());
  EXPECT_NE(std::string::npos, v.damage().damaged().back().detail.find("different data keys"));
  // Key slot 0 still holds the new DEK: with the new states put back, the file reads again.
  WriteRange(v.Path("f"), 256, new_states);
  EXPECT_EQ("new data", TempVolume::Read(*v.Open("f"), 8));
}

}  // namespace
}  // namespace envelopefs::testing
