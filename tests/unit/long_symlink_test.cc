// Unit tests of long symlink targets (long_symlink.h): where the inline encoding stops, the side
// file's byte layout against the fixed vector of envelopefs-format(5), and what a damaged,
// missing, swapped or planted side file reads as.
#include "envelopefs/long_symlink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/temp_dir.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/unique_fd.h"
#include "name_transform_fixture.h"
#include "temp_volume.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;
using namespace envelopefs::testing;

// A scratch directory (the "volume root" and a subdirectory of it), removed afterwards.
class LongSymlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(dir_ / "sub");
    root_.reset(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    sub_.reset(open((dir_ / "sub").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  std::optional<std::string> Read(const NameTransform& names, const std::string& name,
                                  std::string* problem) {
    auto stored = ReadStoredTarget(sub_.get(), name);
    if (!stored) return std::nullopt;
    return ReadBackingSymlink(names, root_.get(), *stored, problem);
  }
  std::string Marker(const std::string& name) { return *ReadStoredTarget(sub_.get(), name); }

  testing::TempDir tmp_{"envelopefs-longlink"};
  const fs::path dir_ = tmp_.path();
  UniqueFd root_, sub_;
};

std::string Pattern(size_t n) {
  std::string s(n, 'a');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

TEST_F(LongSymlinkTest, TargetsUpTo4095BytesRoundTripAndShortOnesKeepTheInlineEncoding) {
  for (uint32_t format : {kFormat1, kFormat2}) {
    NameTransform names = MakeNames(false, format);
    const size_t last_inline = format == kFormat1 ? 3039 : 3023;  // envelopefs-format(5)
    EXPECT_TRUE(names.SymlinkFitsInline(last_inline));
    EXPECT_FALSE(names.SymlinkFitsInline(last_inline + 1));
    for (size_t n : {size_t{1}, last_inline, last_inline + 1, size_t{4000}, size_t{4095}}) {
      const std::string name = "l" + std::to_string(format) + "_" + std::to_string(n);
      const std::string target = Pattern(n);
      ASSERT_EQ(0, CreateBackingSymlink(names, root_.get(), sub_.get(), name, target)) << n;
      EXPECT_EQ(n > last_inline, IsLongSymlinkMarker(Marker(name))) << n;
      if (n <= last_inline) {
        EXPECT_EQ(*names.DecryptSymlink(Marker(name)), target);
      }
      std::string problem;
      auto back = Read(names, name, &problem);
      ASSERT_TRUE(back) << n << ": " << problem;
      EXPECT_EQ(target, *back);
    }
    EXPECT_EQ(-ENAMETOOLONG,
              CreateBackingSymlink(names, root_.get(), sub_.get(), "too", Pattern(4096)));
    EXPECT_EQ(-EINVAL, CreateBackingSymlink(names, root_.get(), sub_.get(), "empty", ""));
  }
  // Plaintext names store every target as it is, 4,095 bytes included.
  NameTransform plain = MakeNames(true);
  ASSERT_EQ(0, CreateBackingSymlink(plain, root_.get(), sub_.get(), "p", Pattern(4095)));
  EXPECT_EQ(Pattern(4095), Marker("p"));
  // Side files are internal at the root only, and only with encrypted names.
  const std::string side = "envelopefs.symlink.AAECAwQFBgcICQoLDA0ODw";
  EXPECT_TRUE(MakeNames().IsInternal(side, true));
  EXPECT_FALSE(plain.IsInternal(side, true));
}

// The fixed vector of envelopefs-format(5), computed independently (Python's cryptography
// AESSIV): name key 00 01 .. 3f, id 00 01 .. 0f, the 4,095-byte target "abc..zabc..".
TEST_F(LongSymlinkTest, SideFileMatchesTheFixedVector) {
  SecureBytes key(64);
  for (size_t i = 0; i < 64; ++i) key.data()[i] = static_cast<uint8_t>(i);
  NameTransform names(key, SecureBytes::Random(32), false, kFormat2);
  std::array<uint8_t, 16> id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> sealed = names.SealLongSymlink(id, Pattern(4095));
  ASSERT_EQ(4112u, sealed.size());
  EXPECT_EQ("6e72c28817132f550e38c540cac4dceb", ToHex(std::span(sealed).first(16)));
  EXPECT_EQ("844223ded7bf14f8e494f3973aff6c2b4086b09afbbb75a61b8b46af839ff138",
            ToHex(Sha256(sealed)));
  EXPECT_EQ(Pattern(4095), *names.OpenLongSymlink(id, sealed));
  // Planted under the fixed id's marker, it reads back through a symlink.
  const std::string marker = std::string(kLongSymlinkPrefix) + ToBase64Url(id);
  EXPECT_EQ("envelopefs.symlink.AAECAwQFBgcICQoLDA0ODw", marker);
  ASSERT_EQ(0, symlinkat(marker.c_str(), sub_.get(), "v"));
  Spit(dir_ / marker, std::string(sealed.begin(), sealed.end()));
  std::string problem;
  auto back = Read(names, "v", &problem);
  ASSERT_TRUE(back) << problem;
  EXPECT_EQ(Pattern(4095), *back);
}

TEST_F(LongSymlinkTest, DamagedMissingSwappedOrPlantedSideFilesDoNotRead) {
  NameTransform names = MakeNames();
  ASSERT_EQ(0, CreateBackingSymlink(names, root_.get(), sub_.get(), "a", Pattern(4000)));
  ASSERT_EQ(0, CreateBackingSymlink(names, root_.get(), sub_.get(), "b", Pattern(3500)));
  const fs::path side_a = dir_ / Marker("a"), side_b = dir_ / Marker("b");
  const std::string a = Slurp(side_a), b = Slurp(side_b);
  auto expect_damaged = [&](const std::string& what, const std::string& why) {
    std::string problem;
    EXPECT_FALSE(Read(names, "a", &problem)) << what;
    EXPECT_NE(std::string::npos, problem.find(why)) << what << ": " << problem;
    EXPECT_NE(std::string::npos, problem.find(Marker("a"))) << what << ": " << problem;
  };
  auto replace = [&](const std::string& content) {
    fs::remove(side_a);
    Spit(side_a, content);
  };
  std::string flipped = a;
  flipped[100] ^= 1;
  replace(flipped);
  expect_damaged("a flipped bit", "does not authenticate");
  replace(b);  // another symlink's side file: bound to its id
  expect_damaged("swapped", "does not authenticate");
  replace(a.substr(0, a.size() - 16));
  expect_damaged("truncated", "does not authenticate");
  replace(a + std::string(8192, 'x'));
  expect_damaged("too large", "not a regular file of at most");
  // Another key's side file for the same id.
  std::array<uint8_t, 16> id;
  std::copy_n(FromBase64Url(Marker("a").substr(19))->begin(), 16, id.begin());
  std::vector<uint8_t> foreign = MakeNames().SealLongSymlink(id, Pattern(4000));
  replace(std::string(foreign.begin(), foreign.end()));
  expect_damaged("another key", "does not authenticate");
  // A canonical long form only: a short target in a side file is refused.
  std::vector<uint8_t> short_one = names.SealLongSymlink(id, "short");
  replace(std::string(short_one.begin(), short_one.end()));
  expect_damaged("a short target", "does not authenticate");
  fs::remove(side_a);
  expect_damaged("missing", "missing");
  ASSERT_EQ(0, mkfifo(side_a.c_str(), 0600));  // must not hang
  expect_damaged("a FIFO", "not a regular file");
  fs::remove(side_a);
  fs::create_symlink(side_b, side_a);  // never followed
  expect_damaged("a symlink", "cannot be opened");
  fs::remove(side_a);
  fs::create_directory(side_a);
  expect_damaged("a directory", "not a regular file");
  // Malformed markers are not markers: they are inline encodings that do not authenticate.
  for (std::string stored : {std::string("envelopefs.symlink."), Marker("b") + "A",
                             std::string("envelopefs.symlink./../../../etc/passwd0000"),
                             Marker("b").substr(0, Marker("b").size() - 1) + "="}) {
    EXPECT_FALSE(IsLongSymlinkMarker(stored)) << stored;
    std::string problem;
    EXPECT_FALSE(ReadBackingSymlink(names, root_.get(), stored, &problem)) << stored;
  }
}

TEST_F(LongSymlinkTest, TheSideFileGoesWithTheLastLink) {
  NameTransform names = MakeNames();
  ASSERT_EQ(0, CreateBackingSymlink(names, root_.get(), sub_.get(), "a", Pattern(4095)));
  const std::string marker = Marker("a");
  ASSERT_EQ(0, linkat(sub_.get(), "a", root_.get(), "hard", 0));
  ASSERT_EQ(0, renameat(sub_.get(), "a", sub_.get(), "renamed"));
  {
    BackingSymlinkDrop drop(names, root_.get(), sub_.get(), "renamed");
    ASSERT_EQ(0, unlinkat(sub_.get(), "renamed", 0));
    drop.Finish();
  }
  EXPECT_TRUE(fs::exists(dir_ / marker)) << "another link remains";
  std::string problem;
  auto stored = ReadStoredTarget(root_.get(), "hard");
  ASSERT_TRUE(stored);
  EXPECT_EQ(Pattern(4095), *ReadBackingSymlink(names, root_.get(), *stored, &problem));
  {
    BackingSymlinkDrop drop(names, root_.get(), root_.get(), "hard");
    ASSERT_EQ(0, unlinkat(root_.get(), "hard", 0));
    drop.Finish();
  }
  EXPECT_FALSE(fs::exists(dir_ / marker));
  // A short target, a regular file and a missing entry: nothing to do.
  ASSERT_EQ(0, CreateBackingSymlink(names, root_.get(), sub_.get(), "s", "short"));
  BackingSymlinkDrop(names, root_.get(), sub_.get(), "s").Finish();
  BackingSymlinkDrop(names, root_.get(), sub_.get(), "nothing").Finish();
}

}  // namespace
}  // namespace envelopefs
