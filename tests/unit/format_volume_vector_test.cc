// Fixed vectors of whole volumes, one per format version; every later version must open each
// and read back exactly its plaintext tree. Golden: no test ever rewrites them.
//
// tests/data/v1/volume (key tests/data/v1/volume.key), made by envelopectl 0.1.0 and a mount:
// config, keyring, encrypted and long names, a subdirectory, a symlink, an empty file, a
// multi-chunk file and a sparse file.
//
// tests/data/v2/volume (key tests/data/v2/volume.key), made by envelopectl 0.2 and a mount with
// --chunk-size 4096: the same tree in format 2 (config, keyring with generation 2 and two KEK
// versions, symlink target with a random nonce, chunk index and sealed digests), plus a file
// written after a rotation (KEK version 2) and "indexed.bin", 300 chunks of which chunk 0,
// chunk 256 and the partial last one hold data: an index block between chunks 255 and 256,
// holes around it. Its audit log holds four chained, authenticated lines.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "common/temp_dir.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/cipher_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> CommonTree(const std::string& hello) {
  std::string csv;
  for (int i = 0; i < 3000; ++i) {
    char line[32];
    std::snprintf(line, sizeof line, "%05d,row-%05d\n", i, i * 7);
    csv += line;
  }
  std::string sparse(100000, '\0');
  sparse[50000] = 'x';
  return {
      {"hello.txt", hello},
      {"lake/", ""},
      {"lake/year=2026/", ""},
      {"lake/year=2026/part-0000.csv", csv},
      {"current", "-> lake/year=2026"},
      {std::string(200, 'L'), "long"},
      {"empty", ""},
      {"sparse", sparse},
  };
}

std::map<std::string, std::string> ExpectedTree(int version) {
  if (version == 1) return CommonTree("hello, envelopefs v1\n");
  std::map<std::string, std::string> tree = CommonTree("hello, envelopefs v2\n");
  std::string indexed(299 * 4096 + 4, '\0');
  for (size_t i = 0; i < 4096; ++i) indexed[i] = static_cast<char>((i * 13 + 5) & 0xff);
  indexed.replace(256 * 4096, 4096, std::string(4096, 'G'));
  indexed.replace(299 * 4096, 4, "tail");
  tree["indexed.bin"] = indexed;
  tree["after-rotation.txt"] = "written under KEK version 2\n";
  return tree;
}

class VolumeVector : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    // Work on a copy: opening must not need to write, but a test must never touch the vector.
    fs::copy(Data() / "volume", root_ / "volume",
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  }
  fs::path Data() const {
    return fs::path(ENVELOPEFS_TEST_DATA_DIR) / ("v" + std::to_string(GetParam()));
  }
  // The vector's key file is checked out with the repository's mode (0644).
  std::unique_ptr<MasterKeySource> Key() const {
    return MakeKeyFileSource(Data() / "volume.key", /*allow_insecure=*/true);
  }
  testing::TempDir tmp_{"envelopefs-vector"};
  const fs::path root_ = tmp_.path();
};

TEST_P(VolumeVector, OpensAndReadsBackExactlyItsTree) {
  const int version = GetParam();
  auto volume = Volume::Open(root_ / "volume", *Key());
  EXPECT_EQ(static_cast<uint32_t>(version), volume->config().format_version);
  EXPECT_EQ(4096u, volume->config().chunk_size);
  EXPECT_FALSE(volume->config().plaintext_names);
  EXPECT_EQ(version == 1 ? 0u : 2u, volume->keyring_generation());
  NameTransform names(volume->name_key(), volume->xattr_key(), false,
                      volume->config().format_version);

  std::map<std::string, std::string> got;
  std::map<std::string, uint32_t> kek_version;
  LoggingDamageReporter damage;
  WalkCipherDir(root_ / "volume", names, [&](const CipherEntry& e) {
    ASSERT_TRUE(e.name_ok) << e.cipher_path;
    if (e.type == DT_DIR) {
      got[e.plain_path + "/"] = "";
    } else if (e.type == DT_LNK) {
      char buf[4096];
      ssize_t n = readlink(e.cipher_path.c_str(), buf, sizeof buf);
      ASSERT_GT(n, 0);
      auto target = names.DecryptSymlink(std::string_view(buf, static_cast<size_t>(n)));
      ASSERT_TRUE(target.has_value()) << e.cipher_path;
      got[e.plain_path] = "-> " + *target;
    } else {
      auto file = CipherFile::Open(UniqueFd(open(e.cipher_path.c_str(), O_RDONLY | O_CLOEXEC)),
                                   *volume, e.cipher_path, damage);
      EXPECT_EQ(version, file->format_version()) << e.plain_path;
      EXPECT_TRUE(file->sealed()) << e.plain_path;
      std::string content(file->size(), '\0');
      ASSERT_EQ(static_cast<ssize_t>(content.size()),
                file->Read({reinterpret_cast<uint8_t*>(content.data()), content.size()}, 0));
      got[e.plain_path] = content;
      int fd = open(e.cipher_path.c_str(), O_RDONLY | O_CLOEXEC);
      HeaderRead header = ReadHeader(fd);
      close(fd);
      kek_version[e.plain_path] = header.slots[header.NewestSlot()].kek_version;
    }
  });
  EXPECT_EQ(ExpectedTree(version), got);
  if (version == 2) {
    EXPECT_EQ(2u, kek_version["after-rotation.txt"]);
    EXPECT_EQ(1u, kek_version["hello.txt"]);
    AuditLogReport log = VerifyAuditLog(volume->root_fd(), volume->config(), &volume->audit_key());
    EXPECT_TRUE(log.problems.empty());
    EXPECT_EQ(4u, log.authenticated);
  }
}

TEST_P(VolumeVector, TheVectorKeyringRejectsAnotherKey) {
  const fs::path other = root_ / "other.key";
  std::FILE* f = std::fopen(other.c_str(), "wb");
  ASSERT_NE(nullptr, f);
  std::fwrite(std::string(32, '\x01').data(), 1, 32, f);
  std::fclose(f);
  try {
    Volume::Open(root_ / "volume", *MakeKeyFileSource(other, /*allow_insecure=*/true));
    ADD_FAILURE() << "opened with the wrong key";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kWrongKey, e.kind()) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(FormatVersions, VolumeVector, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "Version" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace envelopefs
