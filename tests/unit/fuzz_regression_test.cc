// Regression tests for what the fuzz targets (tests/fuzz, run by scripts/fuzz) found: each test
// feeds the library the input that failed, which is also kept as a seed named regress-* in
// tests/fuzz/corpus/<target>/. They matter most in the ASan+UBSan build of scripts/test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "common/temp_dir.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/keyring.h"
#include "envelopefs/shown_ctime.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class FuzzRegression : public ::testing::Test {
 protected:
  void SetUp() override {
    root_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  // The one-line message of the Error(kConfig) that loading the config throws.
  std::string ConfigError() {
    try {
      VolumeConfig::LoadAt(root_.get(), dir_);
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kConfig, e.kind());
      return e.what();
    }
    ADD_FAILURE() << "the config loaded";
    return "";
  }

  testing::TempDir tmp_{"envelopefs-fuzzreg"};
  const fs::path dir_ = tmp_.path();
  UniqueFd root_;
};

// fuzz_volume_config: an empty hex string (volume_id = '') passed a null buffer to
// sodium_hex2bin (undefined behaviour, UBSan nonnull-attribute).
TEST_F(FuzzRegression, EmptyHexDecodesToNoBytes) {
  auto bytes = FromHex("");
  ASSERT_TRUE(bytes.has_value());
  EXPECT_TRUE(bytes->empty());
  EXPECT_FALSE(FromHex("0").has_value());
  EXPECT_EQ(std::vector<uint8_t>({0xab}), FromHex("ab"));
}

TEST_F(FuzzRegression, ConfigWithAnEmptyVolumeIdIsRefusedInOneLine) {
  Write(kConfigFileName,
        "[volume]\nchunk_size = 4096\nformat_version = 1\nplaintext_names = false\n"
        "volume_id = ''\n");
  const std::string message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("invalid volume_id")) << message;
  EXPECT_EQ(std::string::npos, message.find('\n')) << message;
}

TEST_F(FuzzRegression, KeyringWithAnEmptyVolumeIdIsRefused) {
  try {
    KeyringFile::Parse("format = 2\nvolume_id = ''\n", dir_ / kKeyringFileName);
    ADD_FAILURE() << "the keyring parsed";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kConfig, e.kind());
  }
}

// fuzz_volume_config: toml++ converts a float to an integer when asked for one, with a cast
// that is undefined behaviour when the float is out of range (chunk_size = 7.7e112). Integers
// are now read exactly: a float where an integer belongs is refused.
TEST_F(FuzzRegression, ConfigWithAHugeFloatForAnIntegerIsRefusedInOneLine) {
  Write(kConfigFileName,
        "[volume]\nchunk_size = 7.7e112\nformat_version = 2\nplaintext_names = false\n"
        "volume_id = '1e7136de9a0aee379992f2c984e97bb3'\n");
  std::string message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("chunk_size")) << message;
  Write(kConfigFileName, "[volume]\nformat_version = -1e300\n");
  message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("format_version")) << message;
  Write(kConfigFileName,
        "[volume]\nchunk_size = 4096\nformat_version = 1\nplaintext_names = false\n"
        "volume_id = '1e7136de9a0aee379992f2c984e97bb3'\nrotate_after_days = 1e300\n"
        "[master_key]\nsource = 'keyfile'\n");
  message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("invalid rotate_after_days")) << message;
  Write(kConfigFileName,
        "[volume]\nchunk_size = 4096\nformat_version = 1\nplaintext_names = false\n"
        "volume_id = '1e7136de9a0aee379992f2c984e97bb3'\n[master_key]\nsource = 'passphrase'\n"
        "kdf = 'argon2id'\nopslimit = 1e300\nmemlimit = 9e300\n"
        "salt = '00112233445566778899aabbccddeeff'\n");
  message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("passphrase parameters")) << message;
  Write(kConfigFileName,
        "[volume]\nchunk_size = 4096\nformat_version = 2\nplaintext_names = 0\n"
        "volume_id = '1e7136de9a0aee379992f2c984e97bb3'\n");
  message = ConfigError();
  EXPECT_NE(std::string::npos, message.find("plaintext_names")) << message;
}

// The master-key sources after format 1 are refused in a format-1 config, and a PKCS#11
// section's values are checked strictly (read before anything is authenticated).
TEST_F(FuzzRegression, NewMasterKeySourcesAreCheckedStrictly) {
  for (const char* source : {"command", "pkcs11"}) {
    Write(kConfigFileName,
          std::string("[volume]\nchunk_size = 4096\nformat_version = 1\nplaintext_names = false\n"
                      "volume_id = '1e7136de9a0aee379992f2c984e97bb3'\n[master_key]\nsource = '") +
              source +
              "'\nmechanism = 'CKM_AES_GCM'\ntoken = 't'\nkey = 'k'\n"
              "iv = '000102030405060708090a0b'\nwrapped = '" +
              std::string(96, '0') + "'\n");
    const std::string message = ConfigError();
    EXPECT_NE(std::string::npos, message.find("format-1 config")) << message;
  }
  const std::string head = "format = 2\nvolume_id = '00'\ngeneration = 1\n[master_key]\n";
  const std::string good_iv = "iv = '000102030405060708090a0b'\n";
  const std::string good_wrapped = "wrapped = '" + std::string(96, '0') + "'\n";
  for (const std::string& section :
       {"source = 'pkcs11'\nmechanism = 'CKM_AES_GCM'\ntoken = 't'\nkey = 'k'\n" + good_iv,
        "source = 'pkcs11'\nmechanism = 'CKM_AES_GCM'\ntoken = 't'\n" + good_iv + good_wrapped,
        "source = 'pkcs11'\nmechanism = 'CKM_AES_GCM'\ntoken = ''\nkey = 'k'\n" + good_iv +
            good_wrapped,
        "source = 'pkcs11'\nmechanism = 'CKM_AES_GCM'\ntoken = 1\nkey = 'k'\n" + good_iv +
            good_wrapped,
        "source = 'pkcs11'\nmechanism = 'CKM_AES_GCM'\ntoken = 't'\nkey = 'k'\n"
        "iv = '0001'\n" +
            good_wrapped,
        "source = 'pkcs11'\ntoken = 't'\nkey = 'k'\n" + good_iv + good_wrapped,
        std::string("source = 'kmip'\n")}) {
    try {
      KeyringFile::Parse(head + section, dir_ / kKeyringFileName);
      ADD_FAILURE() << "parsed: " << section;
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kConfig, e.kind()) << section;
      EXPECT_NE(std::string::npos, std::string(e.what()).find("[master_key]")) << e.what();
    }
  }
}

TEST_F(FuzzRegression, KeyringWithHugeFloatsForIntegersIsRefused) {
  for (const char* text :
       {"format = 1e300\n", "format = 2\nvolume_id = '00'\ngeneration = 9e300\n",
        "format = 2\nvolume_id = '00'\ngeneration = 1\n[master_key]\nsource = 'keyfile'\n"
        "[policy]\nrotate_after_days = -9e300\naudit_log = true\n",
        "format = 2\nvolume_id = '00'\ngeneration = 1\n[master_key]\nsource = 'keyfile'\n"
        "[policy]\nrotate_after_days = 90\naudit_log = 1\n"}) {
    try {
      KeyringFile::Parse(text, dir_ / kKeyringFileName);
      ADD_FAILURE() << "parsed: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kConfig, e.kind()) << text;
    }
  }
}

// fuzz_shown_ctime: a recorded stamp far from the file's change time (any value can be put in
// the user.envelopefs.ctime attribute) overflowed the difference of the two (signed overflow,
// UBSan). Such a record does not apply: the file's own change time shows.
TEST_F(FuzzRegression, ShownCtimeWithAStampAtEitherEndOfTimeDoesNotApply) {
  const struct timespec ctime { 3607488378, 5 };
  for (int64_t stamp : {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                        int64_t{-9223372035059226758}}) {
    ShownCtimeRecord record;
    record.shown = {1234, 5};
    record.stamp = {static_cast<time_t>(stamp), 0};
    const auto value = EncodeShownCtime(record);
    const struct timespec shown = ShownCtime(ctime, value);
    EXPECT_TRUE(SameTime(ctime, shown)) << stamp;
  }
  // A record stamped when the change happened still applies.
  ShownCtimeRecord record;
  record.shown = {1234, 5};
  record.stamp = ctime;
  EXPECT_TRUE(SameTime(record.shown, ShownCtime(ctime, EncodeShownCtime(record))));
}

}  // namespace
}  // namespace envelopefs
