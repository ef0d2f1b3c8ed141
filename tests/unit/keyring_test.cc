// Unit tests for the volume config, master-key sources, keyring and Volume: round trips, wrong
// keys, edits detected, rotation and retirement, master-key changes, and the keyring's
// protections against rollback and lost updates.
#include "envelopefs/keyring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/scoped_env.h"
#include "common/temp_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/host_state.h"
#include "envelopefs/key_source.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"
#include "envelopefs/volume_config.h"
#include "error_kind_of.h"
#include "recording_reporter.h"
#include "temp_volume.h"

namespace envelopefs {
namespace {

using testing::KindOf;
using testing::Slurp;
using testing::Spit;

namespace fs = std::filesystem;

class VolumeDir : public ::testing::Test {
 protected:
  testing::RecordingReporter damage_;  // what the daemon side of these tests reported
  void SetUp() override {
    setenv("ENVELOPEFS_TEST_FAST_KDF", "1", 1);
    dir_ = root_ / "cipher";
    key_ = WriteKey("key", 1);
  }

  fs::path WriteKey(const std::string& name, uint8_t fill, size_t size = 32) {
    fs::path p = root_ / name;
    std::ofstream(p, std::ios::binary) << std::string(size, static_cast<char>(fill));
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
    return p;
  }
  fs::path WritePass(const std::string& name, const std::string& text) {
    fs::path p = root_ / name;
    std::ofstream(p) << text << "\n";
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
    return p;
  }
  int RootFd() const { return ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC); }
  // A copy of the format-1 volume vector in dir_; returns its key file (mode 0600).
  fs::path CopyVersion1Vector() const {
    fs::copy(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume", dir_,
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    fs::path key = root_ / "v1.key";
    fs::copy_file(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume.key", key);
    fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
    return key;
  }
  // Holds an exclusive flock on `lock_file` and checks that a keyring rotation through `v`
  // waits for it, then completes once the lock is released.
  static void ExpectRotationWaitsForLock(Volume& v, const fs::path& lock_file) {
    UniqueFd lock(::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(lock.valid()) << lock_file;
    ASSERT_EQ(0, ::flock(lock.get(), LOCK_EX));
    std::atomic<bool> done{false};
    std::string failure;
    std::thread rotate([&] {
      try {
        v.UpdateKeyring([](Keyring& k) { k.Rotate(8000); });
      } catch (const std::exception& e) {
        failure = e.what();  // reported below: an exception must not end the test binary
      }
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(done.load());
    ::flock(lock.get(), LOCK_UN);
    rotate.join();
    EXPECT_TRUE(done.load());
    EXPECT_EQ("", failure);
  }

  testing::TempDir tmp_{"envelopefs-keyring"};
  const fs::path root_ = tmp_.path();
  testing::ScopedEnv state_dir_{"ENVELOPEFS_STATE_DIR", (root_ / "state").string()};
  fs::path dir_, key_;
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

TEST_F(VolumeDir, AKeyFileOthersCanReadIsRefusedUnlessAllowed) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  for (fs::perms extra : {fs::perms::group_read, fs::perms::others_read, fs::perms::others_write}) {
    fs::permissions(key_, fs::perms::owner_read | fs::perms::owner_write | extra);
    try {
      Volume::Open(dir_, *MakeKeyFileSource(key_));
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kUsage, e.kind());
      EXPECT_NE(std::string::npos, std::string(e.what()).find("chmod 600")) << e.what();
    }
    EXPECT_NO_THROW(Volume::Open(dir_, *MakeKeyFileSource(key_, /*allow_insecure=*/true)));
  }
  fs::path pass = WritePass("pass", "words");
  fs::permissions(pass, fs::perms::owner_read | fs::perms::group_read);
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] {
              MakePassFileSource(pass)->MasterKey(MakePassFileSource(pass)->NewParams({}), {});
            }));
}

TEST_F(VolumeDir, PassphraseVolumesUseArgon2idAndTheFirstLine) {
  fs::path pass = WritePass("pass", "correct horse battery staple");
  auto created = Volume::Create(dir_, {}, *MakePassFileSource(pass));
  ASSERT_TRUE(created->master_slots().front().params.kdf.has_value());
  EXPECT_EQ(MasterKeyKind::kPassphrase, created->master_slots().front().params.kind);
  // The parameters live in the keyring, authenticated; the config holds none.
  EXPECT_NE(std::string::npos, Slurp(dir_ / kKeyringFileName).find("argon2id"));
  EXPECT_EQ(std::string::npos, Slurp(dir_ / kConfigFileName).find("argon2id"));
  EXPECT_NO_THROW(Volume::Open(dir_, *MakePassFileSource(pass)));
  fs::path wrong = WritePass("wrong", "correct horse battery stapler");
  EXPECT_EQ(ErrorKind::kWrongKey, KindOf([&] { Volume::Open(dir_, *MakePassFileSource(wrong)); }));
  // A key file for a passphrase volume is a usage error, not a wrong key.
  EXPECT_EQ(ErrorKind::kUsage, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
}

TEST_F(VolumeDir, AnyEditOfTheKeyringIsDetected) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kKeyringFileName);
  const std::string kMac = "do not authenticate together";
  struct Edit {
    std::string from, to, refusal;
  };
  const std::vector<Edit> edits = {
      {"state = 'active'", "state = 'decrypt-only'", kMac},
      {"version = 1", "version = 7", kMac},
      {"generation = 1", "generation = 9", kMac},
      {"rotate_after_days = 90", "rotate_after_days = 36500", kMac},
      {"audit_log = true", "audit_log = false", kMac},
      // The master-key parameters are refused before the MAC (the key is derived from them):
      // here they are incomplete; valid other ones derive another key (a wrong key).
      {"source = 'keyfile'", "source = 'passphrase'", "invalid [master_key]"},
  };
  for (const auto& [from, to, refusal] : edits) {
    std::string edited = original;
    size_t at = edited.find(from);
    ASSERT_NE(std::string::npos, at) << from << " in\n" << original;
    edited.replace(at, from.size(), to);
    Spit(dir_ / kKeyringFileName, edited);
    try {
      Volume::Open(dir_, *MakeKeyFileSource(key_));
      ADD_FAILURE() << from << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kConfig, e.kind()) << from;
      EXPECT_NE(std::string::npos, std::string(e.what()).find(refusal)) << from << ": " << e.what();
    }
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

TEST_F(VolumeDir, EditingTheConfigIsDetectedAndThePolicyIsAuthenticated) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string original = Slurp(dir_ / kConfigFileName);
  std::string edited = original;
  edited.replace(edited.find("chunk_size = 16384"), 18, "chunk_size = 65536");
  Spit(dir_ / kConfigFileName, edited);
  try {
    Volume::Open(dir_, *MakeKeyFileSource(key_));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kConfig, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find(kConfigFileName)) << e.what();
  }
  // A policy line planted in the config changes nothing (finding: silenced rotation checks).
  Spit(dir_ / kConfigFileName, original + "rotate_after_days = 36500\n");
  EXPECT_EQ(90u, Volume::Open(dir_, *MakeKeyFileSource(key_))->policy().rotate_after_days);
  Spit(dir_ / kConfigFileName, original);
  // The policy changes only with the key, as a new keyring generation.
  auto v = Volume::Open(dir_, *MakeKeyFileSource(key_));
  v->UpdateKeyring([](Keyring& k) { k.set_policy(VolumePolicy{30, false}); });
  auto reopened = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_EQ(30u, reopened->policy().rotate_after_days);
  EXPECT_FALSE(reopened->policy().audit_log);
  EXPECT_EQ(2u, reopened->keyring_generation());
}

TEST_F(VolumeDir, DamagedOrForeignConfigNamesTheFile) {
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  for (const std::string& text :
       {std::string("garbage"), std::string("[volume]\nformat_version = 9\n"), std::string("")}) {
    Spit(dir_ / kConfigFileName, text);
    try {
      UniqueFd root(RootFd());
      VolumeConfig::LoadAt(root.get(), dir_);
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
  for (uint32_t size : {1024u, 5000u, 12288u, 2u << 20}) {
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
  daemon->ReloadKeyringIfChanged(damage_);
  EXPECT_EQ(2u, daemon->ActiveKek().info.version);
  EXPECT_TRUE(damage_.damaged().empty()) << "a newer keyring is no damage";
}

TEST_F(VolumeDir, AnOldCopyPutBackBeforeTheReaderReloadsIsNotTakenAsCurrent) {
  // The reader still holds generation 1; envelopectl writes generation 2 (this host sees it),
  // and an old copy identical to the reader's is put back before the reader reloads.
  auto daemon = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const std::string gen1 = Slurp(dir_ / kKeyringFileName);
  Volume::Open(dir_, *MakeKeyFileSource(key_))->UpdateKeyring([](Keyring& k) { k.Rotate(2100); });
  fs::remove(dir_ / kKeyringFileName);
  Spit(dir_ / kKeyringFileName, gen1);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { daemon->ReloadKeyringIfChanged(damage_); }));
  EXPECT_FALSE(daemon->keyring_current()) << "new files would be wrapped under an old KEK";
  // Reported as tampering with the keyring, to the reporter the reader passed in.
  const std::vector<Damage> got = damage_.damaged();
  ASSERT_EQ(1u, got.size());
  EXPECT_EQ((dir_ / kKeyringFileName).string(), got[0].file);
  EXPECT_FALSE(got[0].chunk.has_value());
  EXPECT_FALSE(got[0].detail.empty());
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

TEST_F(VolumeDir, APlantedStagedKeyringIsNeverPromoted) {
  // envelopefs 0.1 promoted "envelopefs.keyring.new" whenever it opened: an attacker could plant
  // an old keyring there. Now it is never read, and the next keyring change removes it.
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  fs::copy_file(dir_ / kKeyringFileName, root_ / "keyring.gen1");
  v->UpdateKeyring([](Keyring& k) { k.Rotate(3000); });
  const std::string current = Slurp(dir_ / kKeyringFileName);
  fs::copy_file(root_ / "keyring.gen1", dir_ / "envelopefs.keyring.new");
  auto opened = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_EQ(2u, opened->ActiveKek().info.version);
  EXPECT_EQ(current, Slurp(dir_ / kKeyringFileName));
  opened->UpdateKeyring([](Keyring& k) { k.Rotate(4000); });
  EXPECT_FALSE(fs::exists(dir_ / "envelopefs.keyring.new"));
}

TEST_F(VolumeDir, AnOldCopyOfTheKeyringIsRefusedOnceANewerOneWasSeen) {
  // Finding 3: restoring an old keyring brought a retired KEK back.
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const KekInfo first = v->ActiveKek().info;
  fs::copy_file(dir_ / kKeyringFileName, root_ / "keyring.gen1");
  v->UpdateKeyring([](Keyring& k) { k.Rotate(5000); });
  v->UpdateKeyring([&](Keyring& k) { k.Retire(first.version); });
  auto daemon = Volume::Open(dir_, *MakeKeyFileSource(key_));  // a mounted daemon
  EXPECT_EQ(3u, daemon->keyring_generation());

  fs::copy_file(root_ / "keyring.gen1", dir_ / kKeyringFileName,
                fs::copy_options::overwrite_existing);
  try {
    Volume::Open(dir_, *MakeKeyFileSource(key_));
    ADD_FAILURE() << "the old keyring was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kConfig, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("rollback")) << e.what();
  }
  // The running daemon keeps its newer keyring: new files stay under version 2, and the
  // retired version does not come back.
  EXPECT_THROW(daemon->ReloadKeyringIfChanged(damage_), Error);
  EXPECT_EQ(2u, daemon->ActiveKek().info.version);
  SecureBytes key;
  EXPECT_FALSE(daemon->FindKek(first.id, first.version, key));
  // A host that never saw the volume cannot tell (documented): the key alone decides.
  setenv("ENVELOPEFS_STATE_DIR", (root_ / "other-host").c_str(), 1);
  EXPECT_NO_THROW(Volume::Open(dir_, *MakeKeyFileSource(key_)));
}

TEST_F(VolumeDir, ConcurrentKeyringChangesNeverLoseAVersion) {
  // Finding 7: change-master saved the keyring it had loaded at start, dropping a rotation that
  // landed meanwhile. Every change now re-reads the keyring under the lock.
  auto a = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  auto b = Volume::Open(dir_, *MakeKeyFileSource(key_));
  b->UpdateKeyring([](Keyring& k) { k.Rotate(6000); });  // lands after `a` loaded the keyring
  fs::path key2 = WriteKey("key2", 7);
  a->ChangeMasterKey(*MakeKeyFileSource(key2));
  auto opened = Volume::Open(dir_, *MakeKeyFileSource(key2));
  EXPECT_EQ(2u, opened->ActiveKek().info.version);
  EXPECT_EQ(2u, opened->Keks().size());
  EXPECT_EQ(3u, opened->keyring_generation());
  // And `b`, which still holds the old master key, cannot silently overwrite it.
  EXPECT_THROW(b->UpdateKeyring([](Keyring& k) { k.Rotate(7000); }), Error);
  EXPECT_EQ(2u, Volume::Open(dir_, *MakeKeyFileSource(key2))->ActiveKek().info.version);
}

TEST_F(VolumeDir, KeyringChangesWaitForTheLock) {
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  ExpectRotationWaitsForLock(*v, dir_ / kKeyringLockFileName);
}

TEST_F(VolumeDir, AFormatOneKeyringIsReadAndWrittenBackInFormatThree) {
  const fs::path key = CopyVersion1Vector();
  auto v = Volume::Open(dir_, *MakeKeyFileSource(key));
  EXPECT_EQ(0u, v->keyring_generation());
  EXPECT_EQ(90u, v->policy().rotate_after_days);
  v->UpdateKeyring([](Keyring& k) { k.Rotate(9000); });
  EXPECT_NE(std::string::npos, Slurp(dir_ / kKeyringFileName).find("format = 3"));
  auto reopened = Volume::Open(dir_, *MakeKeyFileSource(key));
  EXPECT_EQ(1u, reopened->keyring_generation());
  EXPECT_EQ(2u, reopened->ActiveKek().info.version);
  EXPECT_EQ(1u, reopened->config().format_version);  // the volume itself stays format 1
}

// --- found by the attacker's review (red team) -------------------------------------------------

TEST_F(VolumeDir, AChangeByAWriterThatIgnoredTheLockIsNotOverwritten) {
  // The keyring changed between this command's read and its write, by someone who did not
  // take the lock (an older envelopefs, or after an attacker deleted the lock file).
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  const fs::path keyring = dir_ / kKeyringFileName;
  try {
    v->UpdateKeyring([&](Keyring& k) {
      k.Rotate(1000);
      Spit(keyring, Slurp(keyring) + "# changed meanwhile\n");
    });
    ADD_FAILURE() << "overwrote a concurrent change";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kState, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("changed while")) << e.what();
  }
  EXPECT_NE(std::string::npos, Slurp(keyring).find("# changed meanwhile"));
}

TEST_F(VolumeDir, KeyringChangesAlsoWaitForThisHostsLock) {
  // Deleting envelopefs.keyring.lock in the cipher dir does not let two commands of this host
  // race: they also lock a file in the host state directory.
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  fs::remove(dir_ / kKeyringLockFileName);
  ExpectRotationWaitsForLock(
      *v, HostState::Directory() / (ToHex(v->config().volume_id) + ".keyring.lock"));
}

TEST_F(VolumeDir, ADeviceOrFifoPlantedAsTheLockIsNeverOpened) {
  if (geteuid() != 0) GTEST_SKIP() << "mknod of a device needs root";
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  ASSERT_EQ(0, ::mknod((dir_ / kKeyringLockFileName).c_str(), S_IFCHR | 0600, makedev(1, 3)));
  EXPECT_EQ(ErrorKind::kIo, KindOf([&] { v->UpdateKeyring([](Keyring& k) { k.Rotate(1); }); }));
  fs::remove(dir_ / kKeyringLockFileName);
  ASSERT_EQ(0, ::mkfifo((dir_ / kKeyringLockFileName).c_str(), 0600));
  EXPECT_EQ(ErrorKind::kIo, KindOf([&] { v->UpdateKeyring([](Keyring& k) { k.Rotate(1); }); }));
}

TEST_F(VolumeDir, AfterAChangeOfMasterKeyElsewhereNoFileIsWrappedUnderAStaleKek) {
  // A running daemon keeps its keyring when a newer one is under another master key: it can no
  // longer know which KEK is active (the old one may be retired next), so it refuses new files.
  auto daemon = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  auto admin = Volume::Open(dir_, *MakeKeyFileSource(key_));
  EXPECT_TRUE(daemon->keyring_current());
  admin->ChangeMasterKey(*MakeKeyFileSource(WriteKey("key2", 5)));
  EXPECT_THROW(daemon->ReloadKeyringIfChanged(damage_), Error);
  EXPECT_FALSE(daemon->keyring_current());
  int fd = ::open((root_ / "new-file").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  try {
    CipherFile::Create(UniqueFd(fd), *daemon, "new-file", damage_);
    ADD_FAILURE() << "a new file was wrapped under a KEK that may be retired";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kKeyUnavailable, e.kind());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("remount")) << e.what();
  }
}

TEST_F(VolumeDir, HugeArgon2LimitsAreRefusedBeforeAnyDerivation) {
  fs::path pass = WritePass("pass", "words");
  Volume::Create(dir_, {}, *MakePassFileSource(pass));
  std::string keyring = Slurp(dir_ / kKeyringFileName);
  const size_t at = keyring.find("opslimit = ");
  ASSERT_NE(std::string::npos, at);
  keyring.replace(at, keyring.find('\n', at) - at, "opslimit = 1000");
  Spit(dir_ / kKeyringFileName, keyring);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *MakePassFileSource(pass)); }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(VolumeDir, DeeplyDottedKeysDoNotCrashTheParser) {
  // toml++ recurses once per part of a dotted key or table header: 100,000 parts overflowed the
  // stack of every program that read the keyring or the config.
  Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  std::string deep = "[a";
  for (int i = 0; i < 100000; ++i) deep += ".a";
  deep += "]\n";
  const std::string keyring = Slurp(dir_ / kKeyringFileName);
  Spit(dir_ / kKeyringFileName, keyring + deep);
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
  Spit(dir_ / kKeyringFileName, keyring);
  Spit(dir_ / kConfigFileName,
       Slurp(dir_ / kConfigFileName) + "a" + deep.substr(2, 60000) + " = 1\n");
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { Volume::Open(dir_, *MakeKeyFileSource(key_)); }));
}

TEST_F(VolumeDir, AFormatOnePolicyCannotStretchRotationOrSilenceTheLog) {
  // Format 1 kept the policy unauthenticated in the config; the first keyring change must not
  // authenticate an attacker's edit of it.
  const fs::path key = CopyVersion1Vector();
  std::string config = Slurp(dir_ / kConfigFileName);
  config.replace(config.find("rotate_after_days = 90"), 22, "rotate_after_days = 36500");
  config.replace(config.find("audit_log = 'envelopefs.audit.log'"), 34, "audit_log = ''");
  Spit(dir_ / kConfigFileName, config);
  auto v = Volume::Open(dir_, *MakeKeyFileSource(key));
  EXPECT_EQ(90u, v->policy().rotate_after_days);
  EXPECT_TRUE(v->policy().audit_log);
  v->UpdateKeyring([](Keyring& k) { k.Rotate(9000); });
  auto reopened = Volume::Open(dir_, *MakeKeyFileSource(key));
  EXPECT_EQ(90u, reopened->policy().rotate_after_days);
  EXPECT_TRUE(reopened->policy().audit_log);
}

TEST_F(VolumeDir, AShorterFormatOneRotationPeriodIsHonoured) {
  const fs::path key = CopyVersion1Vector();
  std::string config = Slurp(dir_ / kConfigFileName);
  config.replace(config.find("rotate_after_days = 90"), 22, "rotate_after_days = 30");
  Spit(dir_ / kConfigFileName, config);
  EXPECT_EQ(30u, Volume::Open(dir_, *MakeKeyFileSource(key))->policy().rotate_after_days);
}

TEST_F(VolumeDir, TheClaimedKeksAreCheckedForShapeButNotAuthenticated) {
  auto v = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  v->UpdateKeyring([](Keyring& k) { k.Rotate(8000); });
  UniqueFd root(RootFd());
  const std::vector<KekInfo> claimed =
      KeyringFile::Read(root.get(), dir_).claimed_keks(v->config());
  ASSERT_EQ(2u, claimed.size());
  EXPECT_EQ(1u, claimed[0].version);
  EXPECT_EQ(KekState::kActive, claimed[1].state);
  EXPECT_EQ(8000, claimed[1].created_unix);
  const std::string original = Slurp(dir_ / kKeyringFileName);
  auto claim = [&](const std::string& from, const std::string& to) {
    std::string edited = original;
    size_t at = edited.find(from);
    EXPECT_NE(std::string::npos, at) << from;
    if (at != std::string::npos) edited.replace(at, from.size(), to);
    Spit(dir_ / kKeyringFileName, edited);
    return KeyringFile::Read(root.get(), dir_).claimed_keks(v->config());
  };
  // Unauthenticated: an edited date is taken as stored (the caller must say so) ...
  EXPECT_NO_THROW(claim("created = 1970-01-01T02:13:20Z", "created = 2001-01-01T00:00:00Z"));
  // ... but never a keyring of another shape or of another volume.
  EXPECT_EQ(ErrorKind::kConfig,
            KindOf([&] { claim("state = 'decrypt-only'", "state = 'active'"); }));
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] { claim("version = 2", "version = 1"); }));
  EXPECT_EQ(ErrorKind::kConfig, KindOf([&] {
              claim("volume_id = '" + ToHex(v->config().volume_id) + "'",
                    "volume_id = '00000000000000000000000000000000'");
            }));
}

TEST(KeyringRegression, KeyringsOnlyMoveForward) {
  KeyringFacts known{5, "aa", 3, {1}};
  EXPECT_FALSE(KeyringRegression(known, KeyringFacts{6, "bb", 3, {1}}));
  EXPECT_FALSE(KeyringRegression(known, KeyringFacts{5, "aa", 3, {1}}));
  EXPECT_TRUE(KeyringRegression(known, KeyringFacts{4, "cc", 3, {1}}));  // older generation
  EXPECT_TRUE(KeyringRegression(known, KeyringFacts{5, "dd", 3, {1}}));  // forked
  EXPECT_TRUE(KeyringRegression(known, KeyringFacts{6, "ee", 2, {1}}));  // a version missing
  EXPECT_TRUE(KeyringRegression(known, KeyringFacts{6, "ff", 4, {}}));   // retired one back
  // Format 1: every keyring has generation 0; only the KEK facts tell an old copy.
  KeyringFacts v1{0, "11", 2, {1}};
  EXPECT_TRUE(KeyringRegression(v1, KeyringFacts{0, "22", 1, {}}));
  EXPECT_TRUE(KeyringRegression(v1, KeyringFacts{0, "33", 2, {}}));
  EXPECT_FALSE(KeyringRegression(v1, KeyringFacts{0, "44", 3, {1}}));
}

}  // namespace
}  // namespace envelopefs
