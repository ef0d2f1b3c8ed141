// Unit tests of NameTransform's entry names: encrypted and plaintext entry names (any bytes but
// NUL and '/'), long names and their side files, directory IVs and their sync-conflict copies,
// atomic mkdir, internal names. Symlink targets, extended attributes and EscapeName are in
// name_transform_symlink_xattr_test.cc. File system tests run in fresh temp directories.
#include "envelopefs/name_transform.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"
#include "name_transform_fixture.h"

namespace envelopefs {
namespace {

using namespace envelopefs::testing;

// A fresh temp directory (TempDir), open as fd(), removed with its contents at the end.
class NamesDir {
 public:
  NamesDir() {
    fd_.reset(open(tmp_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd_.valid()) throw std::runtime_error("open temp dir failed");
  }
  int fd() const { return fd_.get(); }
  const std::filesystem::path& path() const { return tmp_.path(); }

  void WriteFile(const std::string& name, std::string_view content) const {
    int fd = openat(fd_.get(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(static_cast<ssize_t>(content.size()), write(fd, content.data(), content.size()));
    close(fd);
  }
  std::set<std::string> Entries() const { return EntriesOf(tmp_.path()); }
  static std::set<std::string> EntriesOf(const std::filesystem::path& dir) {
    std::set<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      out.insert(entry.path().filename().string());
    }
    return out;
  }

 private:
  TempDir tmp_{"envelopefs-names"};
  UniqueFd fd_;  // closed before tmp_ removes the directory
};

std::string IvFileContent(const DirIv& iv) {
  return std::string(reinterpret_cast<const char*>(iv.data()), iv.size());
}

// --- construction ----------------------------------------------------------------------------

TEST(NameTransformTest, RequiresA64ByteNameKeyAndA32ByteXattrKey) {
  EXPECT_THROW(NameTransform(SecureBytes::Random(32), SecureBytes::Random(32), false, 2),
               std::invalid_argument);
  EXPECT_THROW(NameTransform(SecureBytes(), SecureBytes::Random(32), true, 2),
               std::invalid_argument);
  EXPECT_THROW(NameTransform(SecureBytes::Random(64), SecureBytes::Random(16), false, 2),
               std::invalid_argument);
  EXPECT_NO_THROW(NameTransform(SecureBytes::Random(64), SecureBytes::Random(32), true, 2));
  EXPECT_THROW(NameTransform(SecureBytes::Random(64), SecureBytes::Random(32), false, 0),
               std::invalid_argument);
  EXPECT_EQ(2u, MakeNames().volume_format());
  EXPECT_FALSE(MakeNames(false, kFormat1).BindsXattrsToObjects());
  EXPECT_TRUE(MakeNames(false, kFormat2).BindsXattrsToObjects());
  EXPECT_TRUE(MakeNames(false, 3).BindsXattrsToObjects());
}

// --- entry names -----------------------------------------------------------------------------

TEST(NameTransformTest, RoundTripsEveryLengthIncludingUtf8AndLongNames) {
  NameTransform names = MakeNames();
  NamesDir dir;
  DirIvs ivs;
  ivs.primary = PatternIv(1);
  for (size_t length = 1; length <= kMaxNameLength; ++length) {
    std::string name = MixedName(length);
    ASSERT_EQ(length, name.size());
    auto backing = names.ToBacking(ivs.primary, name, false);
    ASSERT_TRUE(backing.has_value()) << length;
    EXPECT_LE(backing->size(), kMaxBackingNameLength);
    if (NameTransform::IsLongName(*backing)) {
      ASSERT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, name, *backing)) << length;
    }
    auto plain = names.FromBacking(dir.fd(), ivs, *backing);
    ASSERT_TRUE(plain.has_value()) << length;
    EXPECT_EQ(name, *plain);
  }
}

TEST(NameTransformTest, NamesAreBytesNotUtf8) {
  for (bool plaintext : {false, true}) {
    NameTransform names = MakeNames(plaintext);
    NamesDir dir;
    DirIvs ivs;
    ivs.primary = plaintext ? DirIv{} : PatternIv(2);
    std::string every_byte;  // every byte value but NUL and '/'
    for (int b = 1; b < 256; ++b) {
      if (b != '/') every_byte.push_back(static_cast<char>(b));
    }
    for (std::string name :
         {std::string("\xff\xfe-data.csv"),
          std::string("\xc3\x28"
                      "dir"),
          std::string("line\nbreak\r\t"), std::string("\xed\xa0\x80"), std::string("\x80"),
          every_byte.substr(0, 200), every_byte.substr(200)}) {
      auto backing = names.ToBacking(ivs.primary, name, false);
      ASSERT_TRUE(backing) << EscapeName(name);
      if (NameTransform::IsLongName(*backing)) {
        ASSERT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, name, *backing));
      }
      auto plain = names.FromBacking(dir.fd(), ivs, *backing);
      ASSERT_TRUE(plain) << EscapeName(name);
      EXPECT_EQ(name, *plain);
    }
  }
}

TEST(NameTransformTest, RejectsInvalidPlaintextNames) {
  NameTransform names = MakeNames();
  DirIv iv = PatternIv(1);
  EXPECT_FALSE(names.ToBacking(iv, "", false));
  EXPECT_FALSE(names.ToBacking(iv, ".", false));
  EXPECT_FALSE(names.ToBacking(iv, "..", false));
  EXPECT_FALSE(names.ToBacking(iv, "a/b", false));
  EXPECT_FALSE(names.ToBacking(iv, std::string_view("a\0b", 3), false));
  EXPECT_FALSE(names.ToBacking(iv, std::string(kMaxNameLength + 1, 'a'), false));
  EXPECT_TRUE(names.ToBacking(iv, std::string(kMaxNameLength, 'a'), false));
  // Encrypted names cannot collide with internal files, so no name is reserved.
  EXPECT_TRUE(names.ToBacking(iv, "envelopefs.toml", true));
  EXPECT_TRUE(names.ToBacking(iv, kDirIvFileName, false));
}

TEST(NameTransformTest, IsDeterministicInOneDirectoryAndDiffersAcrossDirectories) {
  NameTransform names = MakeNames();
  auto a1 = names.ToBacking(PatternIv(1), "report.pdf", false);
  auto a2 = names.ToBacking(PatternIv(1), "report.pdf", false);
  auto b = names.ToBacking(PatternIv(2), "report.pdf", false);
  ASSERT_TRUE(a1 && a2 && b);
  EXPECT_EQ(*a1, *a2);
  EXPECT_NE(*a1, *b);
  // Another key gives another name.
  EXPECT_NE(*a1, *MakeNames().ToBacking(PatternIv(1), "report.pdf", false));
}

TEST(NameTransformTest, OutputIsBase64UrlOrTheLongForm) {
  NameTransform names = MakeNames();
  for (size_t length : {1, 15, 16, 17, 100, 175, 176, 200, 255}) {
    auto backing = names.ToBacking(PatternIv(3), std::string(length, 'n'), false);
    ASSERT_TRUE(backing);
    if (NameTransform::IsLongName(*backing)) {
      EXPECT_EQ(std::string(kLongNamePrefix), backing->substr(0, 16));
      EXPECT_EQ(16u + 43u, backing->size());
      EXPECT_TRUE(IsBase64Url(backing->substr(16)));
    } else {
      EXPECT_TRUE(IsBase64Url(*backing)) << *backing;
      EXPECT_LE(backing->size(), kMaxBackingNameLength);
      // tag (16) + padded name, unpadded base64url.
      size_t sealed = 16 + (length / 16 + 1) * 16;
      EXPECT_EQ((sealed * 4 + 2) / 3, backing->size());
    }
  }
  EXPECT_FALSE(NameTransform::IsLongName(*names.ToBacking(PatternIv(3), "short", false)));
  EXPECT_TRUE(
      NameTransform::IsLongName(*names.ToBacking(PatternIv(3), std::string(200, 'n'), false)));
}

TEST(NameTransformTest, LongNamesUseAVerifiedSideFile) {
  NameTransform names = MakeNames();
  NamesDir dir;
  DirIvs ivs;
  ivs.primary = PatternIv(4);
  std::string name = MixedName(200);
  auto backing = names.ToBacking(ivs.primary, name, false);
  ASSERT_TRUE(backing);
  ASSERT_TRUE(NameTransform::IsLongName(*backing));
  std::string side = *backing + kLongNameSuffix;

  // Without its side file the name cannot be read.
  EXPECT_FALSE(names.FromBacking(dir.fd(), ivs, *backing));
  // The side file must belong to this very name.
  EXPECT_EQ(-EINVAL, names.WriteLongNameSideFile(dir.fd(), ivs.primary, MixedName(201), *backing));
  ASSERT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, name, *backing));
  ASSERT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, name, *backing));  // again
  EXPECT_EQ(std::set<std::string>{side}, dir.Entries());  // no temp file left behind
  EXPECT_TRUE(names.IsInternal(side, false));
  EXPECT_FALSE(names.IsInternal(*backing, false));
  EXPECT_FALSE(NameTransform::IsLongName(side));
  auto plain = names.FromBacking(dir.fd(), ivs, *backing);
  ASSERT_TRUE(plain);
  EXPECT_EQ(name, *plain);

  // The side file's content is bound to the hash in the backing name.
  std::string content;
  {
    std::ifstream in(dir.path() / side);
    std::getline(in, content, '\0');
  }
  ASSERT_GT(content.size(), kMaxBackingNameLength);
  ASSERT_EQ(0, unlinkat(dir.fd(), side.c_str(), 0));
  std::string tampered = content;
  tampered[20] = tampered[20] == 'A' ? 'B' : 'A';
  dir.WriteFile(side, tampered);
  EXPECT_FALSE(names.FromBacking(dir.fd(), ivs, *backing));
  // A short cipher name dressed up as a long one is refused (not the canonical form).
  std::string short_cipher = *names.ToBacking(ivs.primary, "short", false);
  std::string fake_long = std::string(kLongNamePrefix) + ToBase64Url(Sha256(AsBytes(short_cipher)));
  dir.WriteFile(fake_long + kLongNameSuffix, short_cipher);
  EXPECT_FALSE(names.FromBacking(dir.fd(), ivs, fake_long));

  EXPECT_EQ(0, names.RemoveLongNameSideFile(dir.fd(), *backing));
  EXPECT_EQ(0, names.RemoveLongNameSideFile(dir.fd(), *backing));      // ENOENT is fine
  EXPECT_EQ(0, names.RemoveLongNameSideFile(dir.fd(), short_cipher));  // no-op
  EXPECT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, "short", short_cipher));
  EXPECT_EQ(0u, dir.Entries().count(short_cipher + kLongNameSuffix));
  EXPECT_EQ(0u, dir.Entries().count(side));
}

TEST(NameTransformTest, TamperedBackingNameDoesNotDecrypt) {
  NameTransform names = MakeNames();
  DirIvs ivs;
  ivs.primary = PatternIv(5);
  std::string backing = *names.ToBacking(ivs.primary, "secret-plans.txt", false);
  for (size_t i = 0; i < backing.size(); ++i) {
    std::string tampered = backing;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(names.FromBacking(-1, ivs, tampered)) << i;
  }
  EXPECT_FALSE(names.FromBacking(-1, ivs, backing.substr(0, backing.size() - 1)));
  EXPECT_FALSE(names.FromBacking(-1, ivs, backing + "AAAA"));
  EXPECT_FALSE(names.FromBacking(-1, ivs, "AAAA"));
  EXPECT_FALSE(names.FromBacking(-1, ivs, ""));
  // A name with a dot is never an encrypted name.
  EXPECT_FALSE(names.FromBacking(-1, ivs, backing + ".x"));
  // A name from another key does not decrypt.
  EXPECT_FALSE(names.FromBacking(-1, ivs, *MakeNames().ToBacking(ivs.primary, "a", false)));
  EXPECT_EQ("secret-plans.txt", *names.FromBacking(-1, ivs, backing));
}

TEST(NameTransformTest, NonCanonicalBase64IsRefused) {
  NameTransform names = MakeNames();
  DirIvs ivs;
  ivs.primary = PatternIv(6);
  // 32 sealed bytes encode to 43 characters; the last one carries 2 unused bits, which the
  // canonical encoding leaves at zero.
  std::string backing = *names.ToBacking(ivs.primary, "x", false);
  ASSERT_EQ(43u, backing.size());
  std::string alphabet = kBase64UrlAlphabet;
  size_t last = alphabet.find(backing.back());
  ASSERT_EQ(0u, last % 4);
  std::string noncanonical = backing;
  noncanonical.back() = alphabet[last | 1];
  EXPECT_FALSE(names.FromBacking(-1, ivs, noncanonical));
  EXPECT_FALSE(names.FromBacking(-1, ivs, backing + "="));  // padded
  std::string standard = backing;                           // the standard (non-URL) alphabet
  for (char& c : standard) c = c == '-' ? '+' : c == '_' ? '/' : c;
  if (standard != backing) {
    EXPECT_FALSE(names.FromBacking(-1, ivs, standard));
  }
  EXPECT_EQ("x", *names.FromBacking(-1, ivs, backing));
}

TEST(NameTransformTest, WrongIvFailsButAnAlternateIvWorks) {
  NameTransform names = MakeNames();
  std::string backing = *names.ToBacking(PatternIv(7), "from-the-other-replica", false);
  DirIvs ivs;
  ivs.primary = PatternIv(8);
  EXPECT_FALSE(names.FromBacking(-1, ivs, backing));
  ivs.alternates = {PatternIv(9), PatternIv(7)};
  auto plain = names.FromBacking(-1, ivs, backing);
  ASSERT_TRUE(plain);
  EXPECT_EQ("from-the-other-replica", *plain);
}

// --- directory IVs ---------------------------------------------------------------------------

TEST(NameTransformTest, ReadDirIvsHonoursSyncConflictCopies) {
  NameTransform names = MakeNames();
  NamesDir dir;
  names.InitDirIv(dir.fd());
  DirIvs before = names.ReadDirIvs(dir.fd());
  EXPECT_TRUE(before.alternates.empty());
  EXPECT_EQ((std::set<std::string>{kDirIvFileName}), dir.Entries());
  struct stat st;
  ASSERT_EQ(0, fstatat(dir.fd(), kDirIvFileName, &st, 0));
  EXPECT_EQ(16, st.st_size);
  EXPECT_EQ(0u, st.st_mode & 0222);

  dir.WriteFile("envelopefs.diriv (conflict)", IvFileContent(PatternIv(10)));
  dir.WriteFile("envelopefs.sync-conflict-20260101-abc.diriv", IvFileContent(PatternIv(11)));
  dir.WriteFile("envelopefs.diriv.orig", IvFileContent(before.primary));  // same as primary
  dir.WriteFile("envelopefs.diriv (short)", "too short");
  DirIvs after = names.ReadDirIvs(dir.fd());
  EXPECT_EQ(before.primary, after.primary);
  std::set<DirIv> alternates(after.alternates.begin(), after.alternates.end());
  EXPECT_EQ((std::set<DirIv>{PatternIv(10), PatternIv(11)}), alternates);
  EXPECT_EQ(2u, after.alternates.size());
}

TEST(NameTransformTest, MissingOrDamagedDirIvThrows) {
  NameTransform names = MakeNames();
  NamesDir dir;
  try {
    names.ReadDirIvs(dir.fd());
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kAuthentication, e.kind());
  }
  dir.WriteFile(kDirIvFileName, "fifteen bytes!!");
  EXPECT_THROW(names.ReadDirIvs(dir.fd()), Error);
  ASSERT_EQ(0, unlinkat(dir.fd(), kDirIvFileName, 0));
  dir.WriteFile(kDirIvFileName, "seventeen bytes!!");
  EXPECT_THROW(names.ReadDirIvs(dir.fd()), Error);
  ASSERT_EQ(0, unlinkat(dir.fd(), kDirIvFileName, 0));
  ASSERT_EQ(0, mkdirat(dir.fd(), kDirIvFileName, 0700));
  EXPECT_THROW(names.ReadDirIvs(dir.fd()), Error);
}

TEST(NameTransformTest, InitDirIvNeverReplacesAnExistingIv) {
  NameTransform names = MakeNames();
  NamesDir dir;
  names.InitDirIv(dir.fd());
  DirIv iv = names.ReadDirIvs(dir.fd()).primary;
  EXPECT_THROW(names.InitDirIv(dir.fd()), Error);
  EXPECT_EQ(iv, names.ReadDirIvs(dir.fd()).primary);
  EXPECT_EQ((std::set<std::string>{kDirIvFileName}), dir.Entries());
}

TEST(NameTransformTest, MakeDirectoryCreatesTheIvBeforeTheName) {
  NameTransform names = MakeNames();
  NamesDir dir;
  std::string backing = *names.ToBacking(PatternIv(12), "photos", false);
  ASSERT_EQ(0, names.MakeDirectory(dir.fd(), backing, 0750));
  struct stat st;
  ASSERT_EQ(0, fstatat(dir.fd(), backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(0750u, st.st_mode & 07777);
  EXPECT_EQ((std::set<std::string>{kDirIvFileName}), NamesDir::EntriesOf(dir.path() / backing));
  UniqueFd child(openat(dir.fd(), backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(child.valid());
  DirIvs ivs = names.ReadDirIvs(child.get());
  EXPECT_NE(DirIv{}, ivs.primary);

  // Two directories get different IVs.
  std::string other = *names.ToBacking(PatternIv(12), "music", false);
  ASSERT_EQ(0, names.MakeDirectory(dir.fd(), other, 0700));
  UniqueFd other_fd(openat(dir.fd(), other.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(other_fd.valid());
  EXPECT_NE(ivs.primary, names.ReadDirIvs(other_fd.get()).primary);

  // A taken name is refused and leaves no temp dir behind, whatever the mode.
  EXPECT_EQ(-EEXIST, names.MakeDirectory(dir.fd(), backing, 0500));
  dir.WriteFile("taken", "");
  EXPECT_EQ(-EEXIST, names.MakeDirectory(dir.fd(), "taken", 0755));
  EXPECT_EQ((std::set<std::string>{backing, other, "taken"}), dir.Entries());
  EXPECT_EQ(ivs.primary, names.ReadDirIvs(child.get()).primary);
}

// --- internal names and plaintext mode -------------------------------------------------------

TEST(NameTransformTest, IsInternalInEncryptedMode) {
  NameTransform names = MakeNames();
  for (bool in_root : {false, true}) {
    EXPECT_TRUE(names.IsInternal("envelopefs.diriv", in_root));
    EXPECT_TRUE(names.IsInternal("envelopefs.diriv (conflict 2)", in_root));
    EXPECT_TRUE(names.IsInternal("envelopefs.sync-conflict-xyz.diriv", in_root));
    EXPECT_TRUE(names.IsInternal(".envelopefs.tmp.0123456789abcdef", in_root));
    EXPECT_TRUE(names.IsInternal(".envelopefs.anything", in_root));
    EXPECT_TRUE(names.IsInternal("envelopefs.long.abc.name", in_root));
    EXPECT_FALSE(names.IsInternal("envelopefs.long.abc", in_root));
    EXPECT_FALSE(names.IsInternal("QUJDREVGR0hJSktMTU5PUA", in_root));
    EXPECT_FALSE(names.IsInternal("xenvelopefs.diriv", in_root));
  }
  EXPECT_TRUE(names.IsInternal("envelopefs.toml", true));
  EXPECT_TRUE(names.IsInternal("envelopefs.toml.tmp", true));
  EXPECT_TRUE(names.IsInternal("envelopefs.keyring", true));
  EXPECT_TRUE(names.IsInternal("envelopefs.audit.log", true));
  EXPECT_FALSE(names.IsInternal("envelopefs.toml", false));
  EXPECT_FALSE(names.IsInternal("envelopefs.keyring", false));
}

TEST(NameTransformTest, PlaintextModeStoresNamesAsTheyAreAndReservesVolumeFiles) {
  NameTransform names = MakeNames(/*plaintext=*/true);
  EXPECT_TRUE(names.plaintext_names());
  DirIvs ivs = names.ReadDirIvs(-1);  // no I/O
  EXPECT_EQ(DirIv{}, ivs.primary);
  EXPECT_TRUE(ivs.alternates.empty());

  EXPECT_EQ("notes.txt", *names.ToBacking(ivs.primary, "notes.txt", true));
  EXPECT_EQ("notes.txt", *names.FromBacking(-1, ivs, "notes.txt"));
  std::string long_name(kMaxNameLength, 'L');
  EXPECT_EQ(long_name, *names.ToBacking(ivs.primary, long_name, false));
  EXPECT_FALSE(names.ToBacking(ivs.primary, long_name + "L", false));
  for (const char* reserved : {"envelopefs.toml", "envelopefs.keyring", "envelopefs.audit"}) {
    EXPECT_FALSE(names.ToBacking(ivs.primary, reserved, true)) << reserved;
    EXPECT_TRUE(names.IsInternal(reserved, true)) << reserved;
    EXPECT_EQ(reserved, *names.ToBacking(ivs.primary, reserved, false)) << reserved;
  }
  EXPECT_FALSE(names.ToBacking(ivs.primary, ".envelopefs.tmp.1", false));
  EXPECT_FALSE(names.FromBacking(-1, ivs, ".envelopefs.tmp.1"));
  EXPECT_FALSE(names.ToBacking(ivs.primary, "..", false));
  // Only the volume files and ".envelopefs." are reserved: there are no IV or side files.
  EXPECT_TRUE(names.ToBacking(ivs.primary, kDirIvFileName, false));
  EXPECT_FALSE(names.IsInternal("envelopefs.long.abc.name", false));

  NamesDir dir;
  // No side files in plaintext mode: a user's "envelopefs.long.x.name" is left alone.
  dir.WriteFile("envelopefs.long.x.name", "user data");
  EXPECT_EQ(0, names.WriteLongNameSideFile(dir.fd(), ivs.primary, "envelopefs.long.x",
                                           "envelopefs.long.x"));
  EXPECT_EQ(0, names.RemoveLongNameSideFile(dir.fd(), "envelopefs.long.x"));
  EXPECT_EQ((std::set<std::string>{"envelopefs.long.x.name"}), dir.Entries());
  ASSERT_EQ(0, unlinkat(dir.fd(), "envelopefs.long.x.name", 0));
  ASSERT_EQ(0, names.MakeDirectory(dir.fd(), "plain", 0700));
  EXPECT_TRUE(NamesDir::EntriesOf(dir.path() / "plain").empty());
  EXPECT_EQ(-EEXIST, names.MakeDirectory(dir.fd(), "plain", 0700));
  names.InitDirIv(dir.fd());  // no-op
  EXPECT_EQ((std::set<std::string>{"plain"}), dir.Entries());
}

}  // namespace
}  // namespace envelopefs
