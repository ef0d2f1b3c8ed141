// Unit tests of RewrapFiles: DEKs move to the active KEK version without touching the data or
// the modification time, a second run finds nothing to do, and files that are not ours are
// skipped or reported.
#include "envelopefs/rewrap.h"

#include <gtest/gtest.h>
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
    auto reopened = v.Open(name);
    std::string data(4, '\0');
    ASSERT_EQ(4, reopened->Read({reinterpret_cast<uint8_t*>(data.data()), 4}, 0));
    EXPECT_EQ("data", data);
  }
  RewrapStats second =
      RewrapFiles(v.volume(), target, std::span(files.data(), 3), nullptr, v.damage());
  EXPECT_EQ(0u, second.rewrapped);
  EXPECT_EQ(3u, second.already_current);
}

}  // namespace
}  // namespace envelopefs::testing
