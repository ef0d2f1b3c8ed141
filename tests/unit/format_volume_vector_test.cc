// Fixed vector of a whole version-1 volume (tests/data/v1/volume, key tests/data/v1/volume.key,
// made by envelopectl 0.1.0 and a mount): config, keyring, encrypted and long names, a
// subdirectory, a symlink, an empty file, a multi-chunk file and a sparse file. Every later
// version must open it and read back exactly this plaintext tree.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "envelopefs/cipher_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> ExpectedTree() {
  std::string csv;
  for (int i = 0; i < 3000; ++i) {
    char line[32];
    std::snprintf(line, sizeof line, "%05d,row-%05d\n", i, i * 7);
    csv += line;
  }
  std::string sparse(100000, '\0');
  sparse[50000] = 'x';
  return {
      {"hello.txt", "hello, envelopefs v1\n"},
      {"lake/", ""},
      {"lake/year=2026/", ""},
      {"lake/year=2026/part-0000.csv", csv},
      {"current", "-> lake/year=2026"},
      {std::string(200, 'L'), "long"},
      {"empty", ""},
      {"sparse", sparse},
  };
}

class VolumeVector : public ::testing::Test {
 protected:
  void SetUp() override {
    // Work on a copy: opening must not need to write, but a test must never touch the vector.
    char tmpl[] = "/tmp/envelopefs-vector-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    root_ = tmpl;
    fs::copy(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume", root_ / "volume",
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(VolumeVector, Version1VolumeStillOpensAndReadsBack) {
  // The vector's key file is checked out with the repository's mode (0644).
  auto source = MakeKeyFileSource(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume.key",
                                  /*allow_insecure=*/true);
  auto volume = Volume::Open(root_ / "volume", *source);
  EXPECT_EQ(4096u, volume->config().chunk_size);
  EXPECT_FALSE(volume->config().plaintext_names);
  NameTransform names(volume->name_key(), volume->xattr_key(), false,
                      volume->config().format_version);

  std::map<std::string, std::string> got;
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
                                   *volume, e.cipher_path.string());
      std::string content(file->size(), '\0');
      ASSERT_EQ(static_cast<ssize_t>(content.size()),
                file->Read({reinterpret_cast<uint8_t*>(content.data()), content.size()}, 0));
      got[e.plain_path] = content;
    }
  });
  EXPECT_EQ(ExpectedTree(), got);
}

TEST_F(VolumeVector, TheVectorKeyringRejectsAnotherKey) {
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

}  // namespace
}  // namespace envelopefs
