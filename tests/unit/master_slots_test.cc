// Master slots of the keyring (keyring format 3): every slot opens the volume, slots are added,
// removed and replaced, the keyring key is renewed when the only slot changes, a running volume
// follows a keyring key renewed elsewhere, older keyrings are upgraded, edits are refused, and the
// fixed vector tests/data/keyring3 (a format-2 volume with a format-3 keyring: a key-file slot and
// a recovery slot, made by envelopectl 0.3) opens with either slot. Recovery key text round trips.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/scoped_env.h"
#include "common/temp_dir.h"
#include "envelopefs/cipher_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/keyring.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/recovery_key.h"
#include "envelopefs/volume.h"
#include "error_kind_of.h"
#include "recording_reporter.h"
#include "temp_volume.h"

namespace envelopefs {
namespace {

using testing::KindOf;
using testing::Slurp;
using testing::Spit;
namespace fs = std::filesystem;

class MasterSlots : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("ENVELOPEFS_TEST_FAST_KDF", "1", 1);
    dir_ = root_ / "cipher";
    key_ = WriteFile("key", std::string(32, '\x01'));
  }
  fs::path WriteFile(const std::string& name, const std::string& content) {
    fs::path p = root_ / name;
    std::ofstream(p, std::ios::binary) << content;
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
    return p;
  }
  std::unique_ptr<MasterKeySource> Key(const fs::path& p) const { return MakeKeyFileSource(p); }
  std::unique_ptr<MasterKeySource> Recovery(const SecureBytes& key) {
    SecureBytes text = FormatRecoveryKey(key);
    return MakeRecoveryKeyFileSource(
        WriteFile("recovery" + std::to_string(++files_),
                  std::string(reinterpret_cast<const char*>(text.data()), text.size()) + "\n"));
  }
  testing::TempDir tmp_{"envelopefs-slots"};
  const fs::path root_ = tmp_.path();
  testing::ScopedEnv state_dir_{"ENVELOPEFS_STATE_DIR", (root_ / "state").string()};
  fs::path dir_, key_;
  int files_ = 0;
};

TEST(RecoveryKey, TextRoundTripsAndToleratesHowPeopleTypeIt) {
  const SecureBytes key = NewRecoveryKey();
  const SecureBytes text = FormatRecoveryKey(key);
  ASSERT_EQ(79u, text.size());
  std::string s(reinterpret_cast<const char*>(text.data()), text.size());
  EXPECT_EQ('-', s[4]);
  auto parsed = ParseRecoveryKey(text.span());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(std::ranges::equal(key.span(), parsed->span()));
  std::string typed;
  for (char c : s)
    typed += c == '-' ? std::string(" ") : std::string(1, static_cast<char>(toupper(c)));
  auto again = ParseRecoveryKey(AsBytes(typed + "\r\n"));
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(std::ranges::equal(key.span(), again->span()));
  EXPECT_FALSE(ParseRecoveryKey(AsBytes(s.substr(0, 78))).has_value());  // a digit short
  EXPECT_FALSE(ParseRecoveryKey(AsBytes(s + "0")).has_value());          // a digit too many
  EXPECT_FALSE(ParseRecoveryKey(AsBytes("g" + s.substr(1))).has_value());
  EXPECT_FALSE(ParseRecoveryKey(AsBytes("")).has_value());
}

TEST_F(MasterSlots, EverySlotOpensTheVolumeAndWrongKeysDoNot) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const SecureBytes recovery = NewRecoveryKey();
  EXPECT_EQ(2u, v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery)));
  const fs::path key2 = WriteFile("key2", std::string(32, '\x02'));
  EXPECT_EQ(3u, v->AddMasterSlot(*Key(key2)));
  EXPECT_NE(std::string::npos, Slurp(dir_ / kKeyringFileName).find("format = 3"));

  auto by_key = Volume::Open(dir_, *Key(key_));
  auto by_recovery = Volume::Open(dir_, *Recovery(recovery));
  auto by_key2 = Volume::Open(dir_, *Key(key2));
  EXPECT_EQ(1u, by_key->unlocked_slot());
  EXPECT_EQ(2u, by_recovery->unlocked_slot());
  EXPECT_EQ(3u, by_key2->unlocked_slot());
  for (const Volume* o : {by_key.get(), by_recovery.get(), by_key2.get()}) {
    EXPECT_TRUE(std::ranges::equal(v->name_key().span(), o->name_key().span()));
    EXPECT_EQ(3u, o->master_slots().size());
  }
  EXPECT_EQ(ErrorKind::kWrongKey,
            KindOf([&] { Volume::Open(dir_, *Key(WriteFile("wrong", std::string(32, '\x03')))); }));
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *Recovery(NewRecoveryKey())); }));
  // No slot of the source's kind: the message names the slots there are.
  try {
    Volume::Open(dir_, *MakePassFileSource(WriteFile("pass", "secret\n")));
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("2 (a recovery key)")) << e.what();
  }
}

TEST_F(MasterSlots, RemovingASlotLocksItsKeyOutButNeverTheLastOne) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const SecureBytes recovery = NewRecoveryKey();
  v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery));
  auto by_recovery = Volume::Open(dir_, *Recovery(recovery));
  by_recovery->RemoveMasterSlot(1);
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  EXPECT_EQ(ErrorKind::kState, KindOf([&] { by_recovery->RemoveMasterSlot(2); }));
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { by_recovery->RemoveMasterSlot(5); }));
  EXPECT_NO_THROW(Volume::Open(dir_, *Recovery(recovery)));
}

TEST_F(MasterSlots, ChangingTheOnlySlotRenewsTheKeyringKeySoOldCopiesOpenNothingNewer) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const std::string old_copy = Slurp(dir_ / kKeyringFileName);
  const fs::path key2 = WriteFile("key2", std::string(32, '\x02'));
  v->ChangeMasterKey(*Key(key2));
  v->UpdateKeyring([](Keyring& k) { k.Rotate(5000); });
  // The old copy opens with the old key, but its keyring key does not open today's keyring.
  const fs::path scratch = root_ / "scratch";
  fs::create_directories(scratch);
  Spit(scratch / kKeyringFileName, old_copy);
  UniqueFd old_root(::open(scratch.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  UniqueFd root(::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const KeyringFile old_file = KeyringFile::Read(old_root.get(), scratch);
  const KeyringFile now_file = KeyringFile::Read(root.get(), dir_);
  KeyringFile::Unlocked old = old_file.Unlock(v->config(), *Key(key_));
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { now_file.Open(v->config(), old.keyring_key); }));
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  EXPECT_EQ(2u, Volume::Open(dir_, *Key(key2))->Keks().size());
}

// Review: a removed slot's secret, with any copy of the keyring made while the slot was there (a
// backup; the cipher dir is readable), yields the keyring key. When only the remover's own slot
// remains, the keyring key must be renewed, or that secret opens today's keyring and every KEK
// made after the removal, and a volume opened through the removed slot keeps following it.
TEST_F(MasterSlots, RemovingTheOtherSlotRenewsTheKeyringKeySoItsSecretOpensNothingNewer) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const SecureBytes recovery = NewRecoveryKey();
  v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery));
  const std::string with_slot2 = Slurp(dir_ / kKeyringFileName);
  auto by_recovery = Volume::Open(dir_, *Recovery(recovery));
  auto by_key = Volume::Open(dir_, *Key(key_));  // e.g. the daemon, mounted through slot 1
  v->RemoveMasterSlot(2);
  v->UpdateKeyring([](Keyring& k) { k.Rotate(5000); });
  const fs::path scratch = root_ / "scratch";
  fs::create_directories(scratch);
  Spit(scratch / kKeyringFileName, with_slot2);
  UniqueFd old_root(::open(scratch.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  UniqueFd root(::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const KeyringFile old_file = KeyringFile::Read(old_root.get(), scratch);
  const KeyringFile now_file = KeyringFile::Read(root.get(), dir_);
  KeyringFile::Unlocked old = old_file.Unlock(v->config(), *Recovery(recovery));
  EXPECT_EQ(2u, old.slot);
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { now_file.Open(v->config(), old.keyring_key); }));
  testing::RecordingReporter damage;
  EXPECT_ANY_THROW(by_recovery->ReloadKeyringIfChanged(damage));
  EXPECT_FALSE(by_recovery->keyring_current());
  by_key->ReloadKeyringIfChanged(damage);  // follows the renewed key through its own slot
  EXPECT_TRUE(by_key->keyring_current());
  EXPECT_EQ(2u, by_key->ActiveKek().info.version);
  // The remaining slot still opens everything, the new KEK included.
  auto reopened = Volume::Open(dir_, *Key(key_));
  EXPECT_EQ(2u, reopened->Keks().size());
  EXPECT_EQ(1u, reopened->master_slots().size());
  EXPECT_EQ(v->master_slots().front().created_unix, reopened->master_slots().front().created_unix);
}

// Review: a fake HSM source (kind pkcs11, no token): the master key of a slot is the first 32
// bytes of its "wrapped" parameter; every MasterKey call counts as one C_Login, which fails when
// the PIN is wrong (as Pkcs11Token does: Error(kWrongKey)).
class FakeHsm : public MasterKeySource {
 public:
  explicit FakeHsm(bool wrong_pin) : wrong_pin_(wrong_pin) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kPkcs11; }
  MasterKeyParams NewParams(const VolumeId&) const override {
    MasterKeyParams params;
    params.kind = MasterKeyKind::kPkcs11;
    Pkcs11Params p;
    p.token_label = "t";
    p.key_label = "k";
    RandomBytes(p.iv);
    RandomBytes(p.wrapped);
    params.pkcs11 = p;
    return params;
  }
  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId&) const override {
    ++logins;
    if (wrong_pin_) throw Error(ErrorKind::kWrongKey, "wrong PIN for PKCS#11 token \"t\"");
    return SecureBytes::Copy(std::span<const uint8_t>(params.pkcs11->wrapped).first(kKeySize));
  }
  mutable int logins = 0;

 private:
  bool wrong_pin_;
};

// Review: a wrong PIN is one failed login, not one per slot of the token (tokens lock their PIN
// after a few failures, and anyone who can write the cipher dir can add slots that are tried
// before authentication); the message is the PIN's.
TEST_F(MasterSlots, AWrongPinIsTriedOnceNotOncePerSlot) {
  FakeHsm hsm(false);
  auto v = Volume::Create(dir_, {}, hsm);
  v->AddMasterSlot(hsm);
  v->AddMasterSlot(hsm);
  ASSERT_EQ(3u, v->master_slots().size());
  EXPECT_EQ(3u, Volume::Open(dir_, hsm)->master_slots().size());
  FakeHsm wrong_pin(true);
  try {
    Volume::Open(dir_, wrong_pin);
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kWrongKey, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("wrong PIN")) << e.what();
  }
  EXPECT_EQ(1, wrong_pin.logins);
}

// Review (fails today, so DISABLED_; a known limit, documented in envelopectl(1), keys retire
// and KEY CUSTODY): retire --destroy-old-master checks that no *current* slot besides the HSM's
// is left, but a slot removed earlier (a recovery key kept on paper) still opens every copy made
// while it existed, and so still yields the retired KEK, until that secret is destroyed too.
// Closing it needs a record of removed slots in the keyring (not kept today).
TEST_F(MasterSlots, DISABLED_AfterRetireWithDestroyOldMasterNoOldCopyYieldsTheRetiredKek) {
  FakeHsm hsm(false);
  auto v = Volume::Create(dir_, {}, hsm);
  const SecureBytes recovery = NewRecoveryKey();
  v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery));
  const std::string with_recovery = Slurp(dir_ / kKeyringFileName);  // a backup
  v->RemoveMasterSlot(2);
  v->UpdateKeyring([](Keyring& k) { k.Rotate(5000); });
  v->ReplaceOnlyMasterSlot(hsm, [](Keyring& k) { k.Retire(1); });  // and the old HSM key goes
  const fs::path scratch = root_ / "scratch";
  fs::create_directories(scratch);
  Spit(scratch / kKeyringFileName, with_recovery);
  UniqueFd old_root(::open(scratch.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const KeyringFile old_file = KeyringFile::Read(old_root.get(), scratch);
  bool opened = false;
  try {
    KeyringFile::Unlocked old = old_file.Unlock(v->config(), *Recovery(recovery));
    const Keyring k = old_file.Open(v->config(), old.keyring_key);
    opened = k.kek(k.keks().front().id, 1) != nullptr;
  } catch (const Error&) {
  }
  EXPECT_FALSE(opened) << "a removed recovery slot still opens a copy holding retired KEK 1";
}

TEST_F(MasterSlots, ChangingOneOfSeveralSlotsKeepsTheOthers) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const SecureBytes recovery = NewRecoveryKey();
  v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery));
  const fs::path key2 = WriteFile("key2", std::string(32, '\x02'));
  v->ChangeMasterKey(*Key(key2));
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  EXPECT_EQ(1u, Volume::Open(dir_, *Key(key2))->unlocked_slot());
  EXPECT_EQ(2u, Volume::Open(dir_, *Recovery(recovery))->unlocked_slot());
}

TEST_F(MasterSlots, ARunningVolumeFollowsAKeyringKeyRenewedByAnUpgradeElsewhere) {
  // A format-1 keyring: its master key is its keyring key until the first change renews it.
  fs::copy(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume", dir_,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  const fs::path key =
      WriteFile("v1.key", Slurp(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume.key"));
  auto daemon = Volume::Open(dir_, *Key(key));
  auto admin = Volume::Open(dir_, *Key(key));
  admin->UpdateKeyring([](Keyring& k) { k.Rotate(9000); });
  EXPECT_NE(std::string::npos, Slurp(dir_ / kKeyringFileName).find("format = 3"));
  testing::RecordingReporter damage;
  daemon->ReloadKeyringIfChanged(damage);
  EXPECT_TRUE(daemon->keyring_current());
  EXPECT_EQ(2u, daemon->ActiveKek().info.version);
  // And the daemon's own change after that (through its slot) lands on the renewed key.
  daemon->UpdateKeyring([](Keyring& k) { k.Rotate(9100); });
  EXPECT_EQ(3u, Volume::Open(dir_, *Key(key))->ActiveKek().info.version);
}

TEST_F(MasterSlots, EditsOfTheSlotsAreRefused) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  const SecureBytes recovery = NewRecoveryKey();
  v->AddMasterSlot(*MakeNewRecoveryKeySource(recovery));
  const std::string original = Slurp(dir_ / kKeyringFileName);
  auto value_of = [&](size_t from) {
    const size_t start = original.find("keyring_key = '", from) + 15;
    return original.substr(start, original.find('\'', start) - start);
  };
  const std::string slot1 = value_of(0), slot2 = value_of(original.find("number = 1"));
  ASSERT_NE(slot1, slot2);
  // Slot 1's wrapped key in slot 2: bound to its slot number, it opens nothing.
  std::string swapped = original;
  swapped.replace(swapped.rfind(slot2), slot2.size(), slot1);
  Spit(dir_ / kKeyringFileName, swapped);
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *Recovery(recovery)); }));
  // A slot dropped, or its source changed: the MAC no longer holds.
  std::string dropped = original;
  const size_t at = dropped.rfind("[[slot]]");
  dropped.erase(at);
  Spit(dir_ / kKeyringFileName, dropped + "\n");
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  std::string retyped = original;
  retyped.replace(retyped.find("source = 'recovery'"), 19, "source = 'command'");
  Spit(dir_ / kKeyringFileName, retyped);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  // Too many slots, a slot number out of range or twice: refused before any key is tried.
  std::string twice = original;
  twice.replace(twice.find("number = 2"), 10, "number = 1");
  Spit(dir_ / kKeyringFileName, twice);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  std::string out_of_range = original;
  out_of_range.replace(out_of_range.find("number = 2"), 10, "number = 9");
  Spit(dir_ / kKeyringFileName, out_of_range);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *Key(key_)); }));
  Spit(dir_ / kKeyringFileName, original);
  EXPECT_NO_THROW(Volume::Open(dir_, *Key(key_)));
}

TEST_F(MasterSlots, AVolumeHasAtMostEightSlots) {
  auto v = Volume::Create(dir_, {}, *Key(key_));
  for (uint32_t n = 2; n <= MasterSlot::kMaxSlots; ++n) {
    EXPECT_EQ(n, v->AddMasterSlot(*MakeNewRecoveryKeySource(NewRecoveryKey())));
  }
  EXPECT_EQ(ErrorKind::kState,
            KindOf([&] { v->AddMasterSlot(*MakeNewRecoveryKeySource(NewRecoveryKey())); }));
  v->RemoveMasterSlot(4);
  EXPECT_EQ(4u, v->AddMasterSlot(*MakeNewRecoveryKeySource(NewRecoveryKey())));
}

// The fixed vector: both slots open it and read the same files.
TEST_F(MasterSlots, TheKeyringFormat3VectorOpensWithEitherSlot) {
  const fs::path data = fs::path(ENVELOPEFS_TEST_DATA_DIR) / "keyring3";
  fs::copy(data / "volume", dir_, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  const fs::path key = WriteFile("k", Slurp(data / "volume.key"));
  const fs::path recovery = WriteFile("r", Slurp(data / "recovery.key"));
  for (auto& source : {MakeKeyFileSource(key), MakeRecoveryKeyFileSource(recovery)}) {
    auto volume = Volume::Open(dir_, *source);
    EXPECT_EQ(2u, volume->keyring_generation());
    ASSERT_EQ(2u, volume->master_slots().size());
    EXPECT_EQ(MasterKeyKind::kKeyFile, volume->master_slots()[0].params.kind);
    EXPECT_EQ(MasterKeyKind::kRecovery, volume->master_slots()[1].params.kind);
    NameTransform names(volume->name_key(), volume->xattr_key(), false,
                        volume->config().format_version);
    std::map<std::string, std::string> got;
    LoggingDamageReporter damage;
    WalkCipherDir(dir_, names, [&](const CipherEntry& e) {
      ASSERT_TRUE(e.name_ok) << e.cipher_path;
      if (e.type == DT_DIR) {
        got[e.plain_path + "/"] = "";
        return;
      }
      auto file = CipherFile::Open(UniqueFd(open(e.cipher_path.c_str(), O_RDONLY | O_CLOEXEC)),
                                   *volume, e.cipher_path, damage);
      std::string content(file->size(), '\0');
      ASSERT_EQ(static_cast<ssize_t>(content.size()),
                file->Read({reinterpret_cast<uint8_t*>(content.data()), content.size()}, 0));
      got[e.plain_path] = content;
    });
    EXPECT_EQ((std::map<std::string, std::string>{{"hello.txt", "hello, keyring format 3\n"},
                                                  {"lake/", ""},
                                                  {"lake/part-0000.csv", "a,b\n1,2\n"}}),
              got);
  }
}

}  // namespace
}  // namespace envelopefs
