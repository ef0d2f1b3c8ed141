// Unit tests for the wording of the keyring's refusals: an edited field of envelopefs.toml is
// blamed on that file, with the value the keyring authenticates; an empty or cut keyring says
// it is empty or truncated.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/scoped_env.h"
#include "common/temp_dir.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "envelopefs/volume_config.h"
#include "temp_volume.h"

namespace envelopefs {
namespace {

using testing::Slurp;
using testing::Spit;

namespace fs = std::filesystem;

class KeyringMessages : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = root_ / "cipher";
    key_ = root_ / "key";
    std::ofstream(key_, std::ios::binary) << std::string(32, '\x01');
    fs::permissions(key_, fs::perms::owner_read | fs::perms::owner_write,
                    fs::perm_options::replace);
  }

  testing::TempDir tmp_{"envelopefs-keyring-messages"};
  const fs::path root_ = tmp_.path();
  testing::ScopedEnv state_dir_{"ENVELOPEFS_STATE_DIR", (root_ / "state").string()};
  fs::path dir_, key_;
};

// The message of an Open that fails, or "" if it succeeds.
std::string OpenFailure(const fs::path& dir, const fs::path& key, ErrorKind* kind = nullptr) {
  try {
    Volume::Open(dir, *MakeKeyFileSource(key));
  } catch (const Error& e) {
    if (kind != nullptr) *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST_F(KeyringMessages, AnEditedConfigFieldIsBlamedOnTheConfigWithTheAuthenticValue) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kConfigFileName);
  const std::string created = original.substr(original.find("created = ") + 10, 20);
  const std::string id = original.substr(original.find("volume_id = '") + 13, 32);
  struct Edit {
    std::string from, to, blame;
  };
  const std::vector<Edit> edits = {
      {"chunk_size = 16384", "chunk_size = 65536", "chunk_size was edited"},
      {"plaintext_names = false", "plaintext_names = true", "plaintext_names was edited"},
      {"created = " + created, "created = 2020-01-01T00:00:00Z", "created was edited"},
      {id, std::string(32, 'a'), "volume_id was edited"},
  };
  const std::vector<std::string> authentic = {"chunk_size = 16384", "plaintext_names = false",
                                              "created = " + created, "volume_id '" + id + "'"};
  for (size_t i = 0; i < edits.size(); ++i) {
    std::string edited = original;
    edited.replace(edited.find(edits[i].from), edits[i].from.size(), edits[i].to);
    Spit(dir_ / kConfigFileName, edited);
    ErrorKind kind = ErrorKind::kIo;
    const std::string message = OpenFailure(dir_, key_, &kind);
    EXPECT_EQ(ErrorKind::kConfig, kind) << message;
    EXPECT_EQ(0u, message.find((dir_ / kConfigFileName).string() + ": ")) << message;
    EXPECT_NE(std::string::npos, message.find(edits[i].blame)) << message;
    EXPECT_NE(std::string::npos, message.find(authentic[i])) << message;
    EXPECT_EQ(std::string::npos, message.find(kKeyringFileName)) << message;
  }
  Spit(dir_ / kConfigFileName, original);
  EXPECT_EQ("", OpenFailure(dir_, key_));
}

TEST_F(KeyringMessages, AnEmptyOrTruncatedKeyringSaysSo) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kKeyringFileName);
  Spit(dir_ / kKeyringFileName, "");
  std::string message = OpenFailure(dir_, key_);
  EXPECT_NE(std::string::npos, message.find("empty (0 bytes)")) << message;
  EXPECT_NE(std::string::npos, message.find("truncated")) << message;
  EXPECT_EQ(std::string::npos, message.find("unsupported")) << message;
  for (size_t cut : {size_t{40}, original.size() / 2, original.size() - 20}) {
    Spit(dir_ / kKeyringFileName, original.substr(0, cut));
    message = OpenFailure(dir_, key_);
    EXPECT_NE(std::string::npos, message.find(kKeyringFileName)) << cut << ": " << message;
    EXPECT_NE(std::string::npos, message.find("truncated")) << cut << ": " << message;
  }
}

}  // namespace
}  // namespace envelopefs
