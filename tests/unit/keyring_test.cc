// Unit tests for the volume config, master-key sources, keyring and Volume: round trips, wrong
// keys, edits detected, rotation and retirement, and crash-safe master-key changes.
#include "envelopefs/keyring.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class VolumeDir : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("ENVELOPEFS_TEST_FAST_KDF", "1", 1);
    char tmpl[] = "/tmp/envelopefs-keyring-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    root_ = tmpl;
    dir_ = root_ / "cipher";
    key_ = WriteKey("key", 1);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path WriteKey(const std::string& name, uint8_t fill, size_t size = 32) {
    fs::path p = root_ / name;
    std::ofstream(p, std::ios::binary) << std::string(size, static_cast<char>(fill));
    return p;
  }
  fs::path WritePass(const std::string& name, const std::string& text) {
    fs::path p = root_ / name;
    std::ofstream(p) << text << "\n";
    return p;
  }
  static std::string Slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Spit(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
  static ErrorKind KindOf(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.kind();
    }
    ADD_FAILURE() << "no Error thrown";
    return ErrorKind::kUsage;
  }

  fs::path root_, dir_, key_;
};

TEST_F(VolumeDir, CreateThenOpenWithTheSameKeyGivesTheSameKeys) {
  auto created = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  auto opened = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_EQ(created->config().volume_id, opened->config().volume_id);
  EXPECT_EQ(16384u, opened->config().chunk_size);
  auto a = created->ActiveKek(), b = opened->ActiveKek();
  EXPECT_EQ(a.info.version, b.info.version);
  EXPECT_TRUE(std::equal(a.key.span().begin(), a.key.span().end(), b.key.span().begin()));
  EXPECT_TRUE(std::equal(created->name_key().span().begin(), created->name_key().span().end(),
                         opened->name_key().span().begin()));
  EXPECT_EQ(fs::perms::owner_all, fs::status(dir_).permissions() & fs::perms::all);
  EXPECT_EQ(fs::perms::owner_read | fs::perms::owner_write,
            fs::status(dir_ / kKeyringFileName).permissions() & fs::perms::all);
}

TEST_F(VolumeDir, WrongKeyIsReportedAsSuchAndChangesNothing) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  std::string keyring = Slurp(dir_ / kKeyringFileName);
  fs::path other = WriteKey("other", 2);
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(other)); }));
  EXPECT_EQ(keyring, Slurp(dir_ / kKeyringFileName));
}

TEST_F(VolumeDir, KeyFileMustHoldExactly32Bytes) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  for (size_t size : {0, 31, 33, 64}) {
    fs::path bad = WriteKey("bad" + std::to_string(size), 1, size);
    EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(bad)); }))
        << size;
  }
  EXPECT_EQ(ErrorKind::kIo,
            KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(root_ / "missing")); }));
}

TEST_F(VolumeDir, PassphraseVolumesUseArgon2idAndTheFirstLine) {
  fs::path pass = WritePass("pass", "correct horse battery staple");
  Volume::Create(dir_, {}, *MakePassFileSource(pass));
  VolumeConfig c = VolumeConfig::Load(dir_);
  ASSERT_TRUE(c.kdf.has_value());
  EXPECT_EQ(MasterKeyKind::kPassphrase, c.master_key_kind);
  EXPECT_NO_THROW(Volume::Open(dir_, *MakePassFileSource(pass)));
  fs::path wrong = WritePass("wrong", "correct horse battery stapler");
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *MakePassFileSource(wrong)); }));
  // A key file for a passphrase volume is a usage error, not a wrong key.
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
}

TEST_F(VolumeDir, AnyEditOfTheKeyringIsDetected) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kKeyringFileName);
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"state = 'active'", "state = 'decrypt-only'"},
      {"version = 1", "version = 7"},
      {"format = 1", "format = 2"},
  };
  for (const auto& [from, to] : edits) {
    std::string edited = original;
    size_t at = edited.find(from);
    ASSERT_NE(std::string::npos, at) << from << " in\n" << original;
    edited.replace(at, from.size(), to);
    Spit(dir_ / kKeyringFileName, edited);
    EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }))
        << from;
  }
  Spit(dir_ / kKeyringFileName, "not toml at all [[[");
  try {
    Volume::Open(dir_, *MakeKeyFileSource(key_));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kConfig, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find(kKeyringFileName)) << e.what();
  }
}

TEST_F(VolumeDir, EditingAnAuthenticatedConfigFieldIsDetectedButPolicyIsEditable) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kConfigFileName);
  std::string edited = original;
  edited.replace(edited.find("chunk_size = 16384"), 18, "chunk_size = 65536");
  Spit(dir_ / kConfigFileName, edited);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
  edited = original;
  edited.replace(edited.find("rotate_after_days = 90"), 22, "rotate_after_days = 30");
  Spit(dir_ / kConfigFileName, edited);
  auto v = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_EQ(30u, v->config().rotate_after_days);
}

TEST_F(VolumeDir, DamagedOrForeignConfigNamesTheFile) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  for (const std::string& text :
       {std::string("garbage"), std::string("[volume]\nformat_version = 9\n"), std::string("")}) {
    Spit(dir_ / kConfigFileName, text);
    try {
      VolumeConfig::Load(dir_);
      ADD_FAILURE() << text;
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kConfig, e.kind());
      EXPECT_NE(std::string::npos, std::string(e.what()).find(kConfigFileName)) << e.what();
    }
  }
  // A keyring from another volume is refused.
  fs::path other = root_ / "other";
  Volume::Create(other, {}, *MakeKeyFileSource(key_));
  fs::path fresh = root_ / "fresh";
  Volume::Create(fresh, {}, *MakeKeyFileSource(key_));
  fs::copy_file(other / kKeyringFileName, fresh / kKeyringFileName,
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(fresh, *MakeKeyFileSource(key_)); }));
}

TEST_F(VolumeDir, InitRefusesANonEmptyDirectoryAndBadChunkSizes) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "data") << "x";
  EXPECT_EQ(ErrorKind::kState, KindOf([&] { Volume::Create(dir_, {}, *MakeKeyFileSource(key_)); }));
  EXPECT_FALSE(fs::exists(dir_ / kConfigFileName));
  for (uint32_t size : {1024u, 5000u, 2u << 20}) {
    CreateOptions o;
    o.chunk_size = size;
    EXPECT_EQ(ErrorKind::kUsage,
              KindOf([&] { Volume::Create(root_ / "c2", o, *MakeKeyFileSource(key_)); }));
  }
}

TEST_F(VolumeDir, RotateThenRetireDestroysTheOldKeyMaterial) {
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const KekInfo first = v->ActiveKek().info;
  v->UpdateKeyring([](Keyring& k) { k.Rotate(1000); });
  auto reopened = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_EQ(2u, reopened->ActiveKek().info.version);
  SecureBytes old;
  EXPECT_TRUE(reopened->FindKek(first.id, first.version, old));
  auto keks = reopened->Keks();
  ASSERT_EQ(2u, keks.size());
  EXPECT_EQ(KekState::kDecryptOnly, keks[0].state);
  EXPECT_EQ(ErrorKind::kState, KindOf([&] {
              v->UpdateKeyring([](Keyring& k) { k.Retire(2); });  // the active one
            }));
  v->UpdateKeyring([&](Keyring& k) { k.Retire(first.version); });
  std::string text = Slurp(dir_ / kKeyringFileName);
  EXPECT_NE(std::string::npos, text.find("retired"));
  // One wrapped key for the volume key, one for the active KEK: the retired one is gone.
  size_t wrapped = 0;
  for (size_t at = text.find("wrapped"); at != std::string::npos; at = text.find("wrapped", at + 1))
    ++wrapped;
  EXPECT_EQ(1u, wrapped) << text;
  auto after = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_FALSE(after->FindKek(first.id, first.version, old));
}

TEST_F(VolumeDir, ARunningReaderPicksUpARotationByReloading) {
  auto daemon = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  auto admin = Volume::Open(dir_, *MakeKeyFileSource(key_));
  admin->UpdateKeyring([](Keyring& k) { k.Rotate(2000); });
  EXPECT_EQ(1u, daemon->ActiveKek().info.version);
  daemon->ReloadKeyringIfChanged();
  EXPECT_EQ(2u, daemon->ActiveKek().info.version);
}

TEST_F(VolumeDir, ChangeMasterKeyRewrapsOnlyTheKeyring) {
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const auto kek = v->ActiveKek();
  fs::path pass = WritePass("pass", "new passphrase");
  v->ChangeMasterKey(*MakePassFileSource(pass));
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
  auto opened = Volume::Open(dir_, *MakePassFileSource(pass));
  EXPECT_TRUE(std::equal(kek.key.span().begin(), kek.key.span().end(),
                         opened->ActiveKek().key.span().begin()));
}

TEST_F(VolumeDir, AStagedKeyringIsCompletedByTheNewKey) {
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  fs::path key2 = WriteKey("key2", 9);
  fs::path backup = root_ / "keyring.old";
  fs::copy_file(dir_ / kKeyringFileName, backup);
  v->ChangeMasterKey(*MakeKeyFileSource(key2));
  // Crash state: staged keyring under the new key, config unchanged (key file -> key file), the
  // old keyring still in place.
  fs::rename(dir_ / kKeyringFileName, dir_ / kKeyringNewFileName);
  fs::copy_file(backup, dir_ / kKeyringFileName);
  // The old key opens the old keyring and leaves the staged one alone...
  EXPECT_NO_THROW(Volume::Open(dir_, *MakeKeyFileSource(key_)));
  EXPECT_TRUE(fs::exists(dir_ / kKeyringNewFileName));
  // ...and the new key completes the change.
  EXPECT_NO_THROW(Volume::Open(dir_, *MakeKeyFileSource(key2)));
  EXPECT_FALSE(fs::exists(dir_ / kKeyringNewFileName));
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
}

}  // namespace
}  // namespace envelopefs
