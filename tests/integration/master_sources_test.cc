// Mounted and envelopectl tests of the master-key sources beyond key files and passphrases: a
// command (--master-command) and a PKCS#11 token, with a real SoftHSM2 (Debian's softhsm2 and
// opensc, installed by scripts/install-deps; the tests fail, never skip, without them). Each test
// makes its own tokens in a temporary directory (SOFTHSM2_CONF). Also DestroyProtectingKey
// (key_source.h) of each source, called in-process.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <set>
#include <string>

#include "envelopectl_fixture.h"
#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "mount_fixture.h"
#include "softhsm.h"

namespace envelopefs::testing {
namespace {

const std::string kDaemon = ENVELOPEFS_BINARY;

// A command that prints key file `key` as 64 hex digits and a newline.
std::string HexCommand(const fs::path& key) {
  return "od -An -tx1 -v " + Quote(key) + " | tr -d ' \\n'; echo";
}

std::string MasterCommand(const std::string& command) {
  return " --master-command " + Quote(command) + " ";
}

TEST(MasterSources, ACommandVolumeMountsWritesRemountsAndReads) {
  TempDir t;
  const fs::path key = t.path() / "key";
  ASSERT_EQ(0, RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(key)).exit_code);
  // 32 raw bytes for init and the first mount, the same key as hex for the second.
  MountedVolume v({"", "", MasterCommand("cat " + Quote(key))});
  WriteFile(v / "a.txt", "through a command");
  EXPECT_TRUE(Contains(ReadFile(v.cipher() / "envelopefs.keyring"), "source = 'command'"));
  EXPECT_FALSE(Contains(ReadFile(v.cipher() / "envelopefs.keyring"), key.string()))
      << "the command is not stored";
  v.Unmount();
  v.set_key_flags(MasterCommand(HexCommand(key)));
  v.Mount();
  EXPECT_EQ("through a command", ReadFile(v / "a.txt"));
}

TEST(MasterSources, APkcs11VolumeMountsWritesRemountsAndReads) {
  SoftHsm hsm;
  MountedVolume v({"--pkcs11-create-key", "", hsm.Flags("volkey")});
  WriteFile(v / "a.txt", "through the token");
  v.Unmount();
  // The PIN from the environment this time.
  ::setenv("ENVELOPEFS_PKCS11_PIN", "5678", 1);
  v.set_key_flags(" --pkcs11-module " + Quote(hsm.module()) + " --pkcs11-token " + hsm.label() +
                  " --pkcs11-key volkey ");
  v.Mount();
  EXPECT_EQ("through the token", ReadFile(v / "a.txt"));
  v.Unmount();
  ::unsetenv("ENVELOPEFS_PKCS11_PIN");

  const std::string keyring = ReadFile(v.cipher() / "envelopefs.keyring");
  EXPECT_TRUE(Contains(keyring, "source = 'pkcs11'")) << keyring;
  EXPECT_TRUE(Contains(keyring, "mechanism = 'CKM_AES_GCM'")) << keyring;
  // The token key was created sensitive and never extractable.
  CommandResult objects = hsm.Tool("--list-objects --type secrkey");
  EXPECT_TRUE(Contains(objects.output, "label:      volkey")) << objects.output;
  EXPECT_TRUE(Contains(objects.output, "never extractable")) << objects.output;
  EXPECT_TRUE(Contains(objects.output, "sensitive")) << objects.output;
}

TEST(MasterSources, ChangeMasterGoesFromFileToPkcs11ToCommandAndBackToFile) {
  SoftHsm hsm;
  MountedVolume v;
  WriteFile(v / "kept.txt", "kept across four master keys");
  v.Unmount();
  const std::string dir = " " + Quote(v.cipher());
  const fs::path keyring = v.cipher() / "envelopefs.keyring";

  // key file -> PKCS#11 (creating the token key)
  CommandResult r = RunCommand(kCtl + " keys change-master --keyfile " + Quote(v.keyfile()) +
                               hsm.Flags("k1", "new-") + "--pkcs11-create-key" + dir);
  ASSERT_EQ(0, r.exit_code) << r.output;
  ExpectOneLine(kCtl + " keys list --keyfile " + Quote(v.keyfile()) + dir, 2,
                "protected by PKCS#11 key \"k1\" in token \"envtest\"");
  v.set_key_flags(hsm.Flags("k1"));
  v.Mount();
  EXPECT_EQ("kept across four master keys", ReadFile(v / "kept.txt"));
  v.Unmount();

  // PKCS#11 -> command (a new key, printed as hex)
  TempDir t;
  const fs::path key2 = t.path() / "key2", key3 = t.path() / "key3";
  ASSERT_EQ(0, RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(key2) +
                          "; head -c 32 /dev/urandom > " + Quote(key3))
                   .exit_code);
  r = RunCommand(kCtl + " keys change-master" + hsm.Flags("k1") + " --new-master-command " +
                 Quote(HexCommand(key2)) + dir);
  ASSERT_EQ(0, r.exit_code) << r.output;
  EXPECT_TRUE(Contains(ReadFile(keyring), "source = 'command'"));
  v.set_key_flags(MasterCommand(HexCommand(key2)));
  v.Mount();
  EXPECT_EQ("kept across four master keys", ReadFile(v / "kept.txt"));
  v.Unmount();

  // command -> key file
  r = RunCommand(kCtl + " keys change-master" + MasterCommand(HexCommand(key2)) + "--new-keyfile " +
                 Quote(key3) + dir);
  ASSERT_EQ(0, r.exit_code) << r.output;
  v.set_key_flags("--keyfile " + Quote(key3));
  v.Mount();
  EXPECT_EQ("kept across four master keys", ReadFile(v / "kept.txt"));
  v.Unmount();

  std::vector<std::string> sources;
  for (const json& e : AuditLines(v.cipher() / "envelopefs.audit.log")) {
    if (e.value("event", "") == "master_key_changed") sources.push_back(e.value("source", ""));
  }
  EXPECT_EQ((std::vector<std::string>{"pkcs11", "command", "keyfile"}), sources)
      << ReadFile(v.cipher() / "envelopefs.audit.log");
}

// The other directions: passphrase -> token key k1 -> token key k2 -> passphrase; after each
// change the new source opens the volume and the old one no longer does.
TEST(MasterSources, ChangeMasterBetweenPassphraseAndTwoTokenKeys) {
  SoftHsm hsm;
  TempDir t;
  const fs::path cipher = t.path() / "cipher", pass = t.path() / "pass";
  WriteSecretFile(pass, "correct horse\n");
  const std::string env = "ENVELOPEFS_TEST_FAST_KDF=1 ", dir = " " + Quote(cipher);
  const std::string by_pass = " --passfile " + Quote(pass) + " ";
  ASSERT_EQ(0, RunCommand(env + kCtl + " init" + by_pass + Quote(cipher)).exit_code);
  const std::string steps[][2] = {
      {by_pass, hsm.Flags("k1", "new-") + "--pkcs11-create-key"},
      {hsm.Flags("k1"), hsm.Flags("k2", "new-") + "--pkcs11-create-key"},
      {hsm.Flags("k2"), " --new-passfile " + Quote(pass)},
  };
  const std::string opens[] = {hsm.Flags("k1"), hsm.Flags("k2"), by_pass};
  for (size_t i = 0; i < 3; ++i) {
    CommandResult r =
        RunCommand(env + kCtl + " keys change-master" + steps[i][0] + steps[i][1] + dir);
    ASSERT_EQ(0, r.exit_code) << i << ": " << r.output;
    EXPECT_EQ(0, RunCommand(kCtl + " keys list" + opens[i] + dir).exit_code) << i;
    EXPECT_NE(0, RunCommand(kCtl + " keys list" + steps[i][0] + dir).exit_code) << i;
  }
}

TEST(MasterSources, Pkcs11FailuresGiveOneLineAndChangeNothing) {
  SoftHsm hsm;
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  // No key in the token and no --pkcs11-create-key: refused, nothing created.
  ExpectOneLine(kCtl + " init" + hsm.Flags("k1") + Quote(cipher), 2,
                "has no AES key labelled \"k1\" (add --pkcs11-create-key");
  EXPECT_FALSE(fs::exists(cipher));
  ExpectOneLine(kCtl + " init" + hsm.Flags("k1", "", hsm.wrong_pin_file()) +
                    "--pkcs11-create-key " + Quote(cipher),
                3, "wrong PIN for PKCS#11 token \"envtest\"");
  EXPECT_FALSE(fs::exists(cipher));
  ASSERT_EQ(0, RunCommand(kCtl + " init" + hsm.Flags("k1") +
                          "--pkcs11-create-key --chunk-size "
                          "4096 " +
                          Quote(cipher))
                   .exit_code);
  const std::string keyring = ReadFile(cipher / "envelopefs.keyring");
  const std::string dir = Quote(cipher);

  ExpectOneLine(kCtl + " keys list" + hsm.Flags("k1", "", hsm.wrong_pin_file()) + dir, 3,
                "wrong PIN for PKCS#11 token \"envtest\"");
  ExpectOneLine(kCtl + " keys list --pkcs11-module " + Quote(t.path() / "nope.so") +
                    " --pkcs11-token envtest --pkcs11-key k1 --pin-file " + Quote(hsm.pin_file()) +
                    " " + dir,
                2, "cannot load PKCS#11 module");
  ExpectOneLine(kCtl +
                    " keys list --pkcs11-module /bin/true --pkcs11-token envtest "
                    "--pkcs11-key k1 --pin-file " +
                    Quote(hsm.pin_file()) + " " + dir,
                2, "cannot load PKCS#11 module /bin/true");
  ExpectOneLine(kCtl + " keys list --pkcs11-module " + Quote(hsm.module()) +
                    " --pkcs11-token envtest --pkcs11-key k1 " + dir,
                2,
                "no PIN for PKCS#11 token \"envtest\": use --pin-file FILE or set "
                "ENVELOPEFS_PKCS11_PIN");
  // The daemon: the same line, nothing mounted.
  const fs::path mnt = t.path() / "mnt";
  fs::create_directories(mnt);
  ExpectOneLine(
      kDaemon + " -f" + hsm.Flags("k1", "", hsm.wrong_pin_file()) + dir + " " + Quote(mnt), 3,
      "envelopefs: wrong PIN for PKCS#11 token \"envtest\"");
  EXPECT_FALSE(IsFuseMount(mnt));
  // Failed unlocks are in the audit log with their line.
  bool logged = false;
  for (const json& e : AuditLines(cipher / "envelopefs.audit.log")) {
    logged = logged || (e.value("event", "") == "unlock_failed" &&
                        Contains(e.value("reason", ""), "wrong PIN for PKCS#11 token"));
  }
  EXPECT_TRUE(logged) << ReadFile(cipher / "envelopefs.audit.log");
  // A change of master key to a token key that is not there changes nothing.
  ExpectOneLine(kCtl + " keys change-master" + hsm.Flags("k1") + hsm.Flags("k2", "new-") + dir, 2,
                "has no AES key labelled \"k2\"");
  EXPECT_EQ(keyring, ReadFile(cipher / "envelopefs.keyring"));

  // The key deleted from the token.
  CommandResult del = hsm.Tool("--delete-object --type secrkey --label k1");
  ASSERT_EQ(0, del.exit_code) << del.output;
  ExpectOneLine(kCtl + " keys list" + hsm.Flags("k1") + dir, 2,
                "PKCS#11 token \"envtest\" has no AES key labelled \"k1\"");
  ExpectOneLine(kDaemon + " -f" + hsm.Flags("k1") + dir + " " + Quote(mnt), 2,
                "has no AES key labelled \"k1\"");
  EXPECT_FALSE(IsFuseMount(mnt));
  // Another key of the same label cannot decrypt the master key.
  ASSERT_EQ(0, hsm.Tool("--keygen --key-type AES:32 --label k1 --sensitive").exit_code);
  ExpectOneLine(kCtl + " keys list" + hsm.Flags("k1") + dir, 3, "cannot decrypt");

  // The token gone.
  CommandResult gone = RunCommand("softhsm2-util --delete-token --token envtest 2>&1");
  ASSERT_EQ(0, gone.exit_code) << gone.output;
  ExpectOneLine(kCtl + " keys list" + hsm.Flags("k1") + dir, 2,
                "no PKCS#11 token labelled \"envtest\"");
  EXPECT_EQ(keyring, ReadFile(cipher / "envelopefs.keyring"));
}

// The [master_key] section is read before anything is authenticated: every edit is refused
// with one line, a bad value as a damaged keyring, a changed ciphertext by the token.
TEST(MasterSources, EditsOfThePkcs11SectionAreRefused) {
  SoftHsm hsm;
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  // A key made outside envelopefs, so that a second volume may share it (below).
  ASSERT_EQ(0, hsm.Tool("--keygen --key-type AES:32 --label k1 --sensitive").exit_code);
  ASSERT_EQ(0, RunCommand(kCtl + " init" + hsm.Flags("k1") + Quote(cipher)).exit_code);
  const fs::path keyring = cipher / "envelopefs.keyring";
  const std::string original = ReadFile(keyring);
  const std::string list = kCtl + " keys list" + hsm.Flags("k1") + Quote(cipher);
  ASSERT_EQ(0, RunCommand(list).exit_code);
  const std::string wrapped = KeyringValue(original, "wrapped"), iv = KeyringValue(original, "iv");
  std::string flipped = wrapped;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  const std::vector<KeyringEdit> edits = {
      {"mechanism = 'CKM_AES_GCM'", "mechanism = 'CKM_AES_CBC'", 4, "invalid [master_key] pkcs11"},
      {"iv = '" + iv + "'", "iv = '" + iv.substr(2) + "'", 4, "invalid [master_key] pkcs11"},
      {"wrapped = '" + wrapped + "'", "wrapped = 'zz'", 4, "invalid [master_key] pkcs11"},
      {"token = 'envtest'", "token = 'env\\u001btest'", 4, "invalid [master_key] pkcs11"},
      {"key = 'k1'", "key = '" + std::string(33, 'k') + "'", 4, "invalid [master_key] pkcs11"},
      {"source = 'pkcs11'", "source = 'kmip'", 4, "invalid [master_key] kmip"},
      {"source = 'pkcs11'", "source = 'kms'", 4, "unknown [master_key] source \"kms\""},
      {"wrapped = '" + wrapped + "'", "wrapped = '" + flipped + "'", 3, "cannot decrypt"},
      {"iv = '" + iv + "'", "iv = '" + std::string(24, '0') + "'", 3, "cannot decrypt"},
  };
  ExpectKeyringEdits(keyring, original, list, edits);
  // Another volume's master key, encrypted by the same token key: bound to that volume's id.
  const fs::path other = t.path() / "other";
  ASSERT_EQ(0, RunCommand(kCtl + " init" + hsm.Flags("k1") + Quote(other)).exit_code);
  const std::string theirs = ReadFile(other / "envelopefs.keyring");
  std::string planted = original;
  planted.replace(planted.find(wrapped), wrapped.size(), KeyringValue(theirs, "wrapped"));
  planted.replace(planted.find(iv), iv.size(), KeyringValue(theirs, "iv"));
  WriteFile(keyring, planted);
  ExpectOneLine(list, 3, "cannot decrypt");

  WriteFile(keyring, original);
  EXPECT_EQ(0, RunCommand(list).exit_code);
}

TEST(MasterSources, CommandFailuresGiveOneLineAndChangeNothing) {
  TempDir t;
  const fs::path key = t.path() / "key", cipher = t.path() / "cipher", mnt = t.path() / "mnt";
  ASSERT_EQ(0, RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(key)).exit_code);
  fs::create_directories(mnt);
  // A failing command creates nothing.
  ExpectOneLine(kCtl + " init" + MasterCommand("echo no key for you >&2; exit 3") + Quote(cipher),
                6, "the master command exited with status 3: no key for you");
  EXPECT_FALSE(fs::exists(cipher));
  ASSERT_EQ(
      0, RunCommand(kCtl + " init" + MasterCommand("cat " + Quote(key)) + Quote(cipher)).exit_code);
  const std::string keyring = ReadFile(cipher / "envelopefs.keyring");
  const std::string dir = Quote(cipher);

  const std::pair<std::string, std::string> bad[] = {
      {"echo garbage", "the master command printed 8 bytes"},
      {"printf '%064d' 0 | tr 0 g", "printed 64 bytes that are not hex digits"},
      {"yes", "printed more than 65 bytes"},
      {"head -c 31 /dev/zero", "printed 31 bytes"},
      {"true", "printed 0 bytes"},
  };
  for (const auto& [command, message] : bad) {
    ExpectOneLine(kCtl + " keys list" + MasterCommand(command) + dir, 2, message);
  }
  ExpectOneLine(kCtl + " keys list" + MasterCommand("kill -9 $$") + dir, 6,
                "the master command was killed by signal 9");
  ExpectOneLine(kCtl + " keys list" + MasterCommand("head -c 32 /dev/zero") + dir, 3, "wrong key");
  // Without a terminal and with nothing on standard input.
  ExpectOneLine(kCtl + " keys list" + MasterCommand("tty >&2; cat; exit 4") + dir, 6,
                "status 4: not a tty");

  // The timeout, also for what the command started in the background.
  const auto start = std::chrono::steady_clock::now();
  ExpectOneLine("ENVELOPEFS_MASTER_COMMAND_TIMEOUT=1 " + kCtl + " keys list" +
                    MasterCommand("sleep 60 & sleep 60") + dir,
                6, "did not finish within 1 s");
  ExpectOneLine("ENVELOPEFS_MASTER_COMMAND_TIMEOUT=1 " + kCtl + " keys list" +
                    MasterCommand("exec >&- 2>&-; sleep 60") + dir,
                6, "did not finish within 1 s");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  ExpectOneLine("ENVELOPEFS_MASTER_COMMAND_TIMEOUT=0 " + kCtl + " keys list" +
                    MasterCommand("cat " + Quote(key)) + dir,
                2, "ENVELOPEFS_MASTER_COMMAND_TIMEOUT must be 1 to 3600 seconds");

  // The daemon: one line, nothing mounted.
  ExpectOneLine(kDaemon + " -f" + MasterCommand("exit 1") + dir + " " + Quote(mnt), 6,
                "envelopefs: the master command exited with status 1");
  EXPECT_FALSE(IsFuseMount(mnt));
  ExpectOneLine(kDaemon + " -f -o " + Quote("master_command=echo x") + " " + dir + " " + Quote(mnt),
                2, "envelopefs: the master command printed 2 bytes");
  EXPECT_FALSE(IsFuseMount(mnt));

  std::set<std::string> reasons;
  for (const json& e : AuditLines(cipher / "envelopefs.audit.log")) {
    if (e.value("event", "") == "unlock_failed") reasons.insert(e.value("reason", ""));
  }
  EXPECT_TRUE(reasons.count("the master command exited with status 1")) << *reasons.begin();
  EXPECT_TRUE(
      reasons.count("the master command did not finish within 1 s "
                    "(ENVELOPEFS_MASTER_COMMAND_TIMEOUT)"));
  // change-master to a failing command changes nothing.
  ExpectOneLine(kCtl + " keys change-master" + MasterCommand("cat " + Quote(key)) +
                    "--new-master-command false " + dir,
                6, "exited with status 1");
  EXPECT_EQ(keyring, ReadFile(cipher / "envelopefs.keyring"));
  // A key file on a command volume says which option opens it.
  ExpectOneLine(kCtl + " keys list --keyfile " + Quote(key) + " " + dir, 2,
                "this volume's master key comes from a command: use --master-command CMD");
}

// The PKCS#11 source configured for key `key` of `hsm` (creating it if missing).
std::unique_ptr<MasterKeySource> TokenSource(const SoftHsm& hsm, const std::string& key) {
  return hsm.Source(key);
}

// Retirement: a source configured for the new key destroys the old key in the token; the old
// master key can no longer be produced, a second destroy succeeds, other keys are untouched and
// the source's own key is never destroyed.
TEST(MasterSources, DestroyProtectingKeyDestroysTheOldTokenKeyOnly) {
  SoftHsm hsm;
  VolumeId volume{}, other_volume{};
  RandomBytes(volume);
  RandomBytes(other_volume);
  auto old_source = TokenSource(hsm, "old"), other_source = TokenSource(hsm, "other");
  auto new_source = TokenSource(hsm, "new");
  const MasterKeyParams old_params = old_source->NewParams(volume);
  const MasterKeyParams other_params = other_source->NewParams(other_volume);
  const MasterKeyParams new_params = new_source->NewParams(volume);
  ASSERT_EQ(kKeySize, old_source->MasterKey(old_params, volume).size());

  EXPECT_EQ("pkcs11 token \"envtest\" key \"old\"",
            new_source->DestroyProtectingKey(old_params, volume));
  try {
    old_source->MasterKey(old_params, volume);
    ADD_FAILURE() << "the old master key is still produced";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind());
    EXPECT_EQ(
        "PKCS#11 token \"envtest\" has no AES key labelled \"old\": this volume's master "
        "key cannot be decrypted",
        std::string(e.what()));
  }
  // Idempotent: a retried retirement succeeds.
  EXPECT_EQ("pkcs11 token \"envtest\" key \"old\" (already gone)",
            new_source->DestroyProtectingKey(old_params, volume));
  // The other keys still open their master keys; the token lists them and not the old one.
  EXPECT_EQ(kKeySize, other_source->MasterKey(other_params, other_volume).size());
  EXPECT_EQ(kKeySize, new_source->MasterKey(new_params, volume).size());
  CommandResult objects = hsm.Tool("--list-objects --type secrkey");
  EXPECT_TRUE(Contains(objects.output, "label:      new")) << objects.output;
  EXPECT_TRUE(Contains(objects.output, "label:      other")) << objects.output;
  EXPECT_FALSE(Contains(objects.output, "label:      old")) << objects.output;

  // The key the source is configured with is refused, whatever params say.
  for (const auto& [source, params] :
       {std::pair{new_source.get(), &new_params}, std::pair{other_source.get(), &other_params}}) {
    try {
      source->DestroyProtectingKey(*params, volume);
      ADD_FAILURE() << "destroyed the source's own key";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kUsage, e.kind());
      EXPECT_TRUE(Contains(e.what(), "refusing to destroy PKCS#11 key \"")) << e.what();
      EXPECT_TRUE(Contains(e.what(), "it is the key given with --pkcs11-key")) << e.what();
    }
  }
  EXPECT_EQ(kKeySize, new_source->MasterKey(new_params, volume).size());
  // Params of another kind, and a wrong PIN: one line, nothing destroyed.
  MasterKeyParams file_params;
  EXPECT_THROW(new_source->DestroyProtectingKey(file_params, volume), Error);
  Pkcs11SourceOptions wrong_pin;
  wrong_pin.module = hsm.module();
  wrong_pin.token_label = hsm.label();
  wrong_pin.key_label = "new";
  wrong_pin.pin_file = hsm.wrong_pin_file().string();
  try {
    MakePkcs11Source(wrong_pin)->DestroyProtectingKey(other_params, other_volume);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kWrongKey, e.kind());
    EXPECT_EQ("wrong PIN for PKCS#11 token \"envtest\"", std::string(e.what()));
  }
  EXPECT_EQ(kKeySize, other_source->MasterKey(other_params, other_volume).size());
}

// Key files, passphrases and commands have no key in an HSM or KMS to destroy.
TEST(MasterSources, DestroyProtectingKeyIsAUsageErrorForFilePassphraseAndCommand) {
  TempDir t;
  const fs::path key = t.path() / "key", pass = t.path() / "pass";
  ASSERT_EQ(0, RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(key)).exit_code);
  WriteSecretFile(pass, "correct horse\n");
  const std::pair<std::unique_ptr<MasterKeySource>, std::string> sources[] = {
      {MakeKeyFileSource(key), "a key file"},
      {MakePassFileSource(pass), "a passphrase"},
      {MakeCommandSource("cat " + Quote(key)), "a command"},
  };
  for (const auto& [source, name] : sources) {
    MasterKeyParams params;
    params.kind = source->kind();
    try {
      source->DestroyProtectingKey(params, VolumeId{});
      ADD_FAILURE() << name;
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kUsage, e.kind()) << name;
      EXPECT_EQ("a master key from " + name +
                    " is not protected by a key in an HSM or KMS: there is no key to destroy "
                    "(only PKCS#11 and KMIP sources have one)",
                std::string(e.what()));
    }
  }
}

}  // namespace
}  // namespace envelopefs::testing
