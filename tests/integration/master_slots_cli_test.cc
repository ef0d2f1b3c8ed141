// envelopectl and envelopefs with several master slots (keyring format 3): a recovery key made
// at init and shown once, mounting with it, keys add-master / remove-master with every change
// audited, keys list of the slots, and keys retire --destroy-old-master with a real SoftHSM2
// token: the old token key is destroyed, so that no old copy of the keyring opens again.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "envelopectl_fixture.h"
#include "envelopefs/volume.h"
#include "mount_fixture.h"
#include "softhsm.h"

namespace envelopefs::testing {
namespace {

// The one line of `text` that starts with `prefix`'s slot's recovery key text (printed by
// init / add-master without -o): the line after "recovery key for master slot".
std::string RecoveryKeyIn(const std::string& text) {
  const size_t at = text.find("recovery key for master slot");
  if (at == std::string::npos) return "";
  const size_t start = text.find('\n', at) + 1;
  return text.substr(start, text.find('\n', start) - start);
}

TEST(MasterSlotsCli, ARecoveryKeyFromInitMountsAndRemovingTheKeyFileSlotLocksTheKeyFileOut) {
  MountedVolume v({"--new-recovery-key", ""});
  WriteFile(v / "a.txt", "kept offline");
  v.Unmount();
  // Init showed slot 2's key on its standard output (InitShowsTheRecoveryKeyOnce reads it);
  // add a third slot whose key goes to a file (-o).
  TempDir t;
  const fs::path recovery = t.path() / "recovery.txt";
  const std::string key = " --keyfile " + Quote(v.keyfile()) + " ";
  CommandResult added = RunCommand(kCtl + " keys add-master" + key + "--new-recovery-key -o " +
                                   Quote(recovery) + " " + Quote(v.cipher()));
  ASSERT_EQ(0, added.exit_code) << added.output;
  EXPECT_TRUE(Contains(added.output, "master slot 3")) << added.output;
  EXPECT_EQ(80u, ReadFile(recovery).size());  // 79 characters and a newline, mode 0600
  EXPECT_EQ(fs::perms::owner_read | fs::perms::owner_write,
            fs::status(recovery).permissions() & fs::perms::all);
  // -o never overwrites: refused before anything changes.
  const std::string before = ReadFile(v.cipher() / "envelopefs.keyring");
  ExpectOneLine(kCtl + " keys add-master" + key + "--new-recovery-key -o " + Quote(recovery) + " " +
                    Quote(v.cipher()),
                6, "cannot create");
  EXPECT_EQ(before, ReadFile(v.cipher() / "envelopefs.keyring"));

  // The slots, listed with and without a key.
  json list = json::parse(RunCommand(kCtl + " keys list --json" + key + Quote(v.cipher())).output);
  ASSERT_EQ(3u, list["master_slots"].size()) << list.dump();
  EXPECT_EQ("keyfile", list["master_slots"][0]["source"]);
  EXPECT_EQ("recovery", list["master_slots"][1]["source"]);
  EXPECT_EQ("recovery", list["master_slots"][2]["source"]);
  EXPECT_TRUE(list["master_slots_authenticated"].get<bool>()) << list.dump();
  CommandResult keyed_text = RunCommand(kCtl + " keys list" + key + Quote(v.cipher()));
  EXPECT_TRUE(Contains(keyed_text.output, "\nmaster slots:\n")) << keyed_text.output;
  EXPECT_FALSE(Contains(keyed_text.output, "as claimed")) << keyed_text.output;
  // Without a key the slots are the keyring's claims, and every output says so.
  json claimed = json::parse(RunCommand(kCtl + " keys list --json " + Quote(v.cipher())).output);
  EXPECT_EQ(3u, claimed["master_slots"].size()) << claimed.dump();
  EXPECT_FALSE(claimed["master_slots_authenticated"].get<bool>()) << claimed.dump();
  // audit reports them too (for the compliance report), without a key as claimed.
  json audit = json::parse(RunCommand(kCtl + " audit --json " + Quote(v.cipher())).output);
  EXPECT_EQ(3u, audit["master_slots"].size()) << audit.dump();
  EXPECT_EQ(0u, audit["old_master_keys_to_destroy"].size()) << audit.dump();
  EXPECT_FALSE(audit["master_slots_authenticated"].get<bool>()) << audit.dump();
  json keyed_audit =
      json::parse(RunCommand(kCtl + " audit --json" + key + Quote(v.cipher())).output);
  EXPECT_TRUE(keyed_audit["master_slots_authenticated"].get<bool>()) << keyed_audit.dump();
  CommandResult audit_text = RunCommand(kCtl + " audit " + Quote(v.cipher()));
  EXPECT_TRUE(
      Contains(audit_text.output, "master slots and old masters as claimed, not authenticated"))
      << audit_text.output;
  CommandResult text = RunCommand(kCtl + " keys list " + Quote(v.cipher()));
  EXPECT_TRUE(Contains(text.output, "master slots (as claimed, not authenticated):\n"))
      << text.output;
  EXPECT_TRUE(Contains(text.output, "3  recovery    a recovery key")) << text.output;

  // Mount with the recovery key (from a file; "-" reads standard input just as well).
  v.set_key_flags(" --recovery-key " + Quote(recovery) + " ");
  v.Mount();
  EXPECT_EQ("kept offline", ReadFile(v / "a.txt"));
  v.Unmount();

  // Remove the key file's slot with the recovery key: the key file no longer opens the volume.
  CommandResult removed = RunCommand(kCtl + " keys remove-master --slot 1 --recovery-key " +
                                     Quote(recovery) + " " + Quote(v.cipher()));
  ASSERT_EQ(0, removed.exit_code) << removed.output;
  // Two slots are left, so the keyring key stays: the message says what that means.
  EXPECT_TRUE(Contains(removed.output, "still opens this keyring")) << removed.output;
  ExpectOneLine(kCtl + " keys list" + key + Quote(v.cipher()), 2, "no master slot of");
  std::vector<json> events = AuditLines(v.cipher() / "envelopefs.audit.log");
  size_t added_events = 0, removed_events = 0;
  for (const json& e : events) {
    if (e.value("event", "") == "master_slot_added") ++added_events;
    if (e.value("event", "") == "master_slot_removed") {
      ++removed_events;
      EXPECT_EQ(1, e.value("slot", 0));
      EXPECT_EQ("keyfile", e.value("source", ""));
    }
  }
  EXPECT_EQ(2u, added_events);
  EXPECT_EQ(1u, removed_events);
  // The last slots cannot all go.
  RunCommand(kCtl + " keys remove-master --slot 2 --recovery-key " + Quote(recovery) + " " +
             Quote(v.cipher()));
  ExpectOneLine(kCtl + " keys remove-master --slot 3 --recovery-key " + Quote(recovery) + " " +
                    Quote(v.cipher()),
                8, "only master slot");
}

TEST(MasterSlotsCli, InitShowsTheRecoveryKeyOnceAndItOpensTheVolume) {
  TempDir t;
  const fs::path key = t.path() / "key", cipher = t.path() / "cipher";
  WriteSecretFile(key, std::string(32, 'k'));
  CommandResult init =
      RunCommand(kCtl + " init --keyfile " + Quote(key) + " --new-recovery-key " + Quote(cipher));
  ASSERT_EQ(0, init.exit_code) << init.output;
  const std::string shown = RecoveryKeyIn(init.output);
  ASSERT_EQ(79u, shown.size()) << init.output;
  // Nothing of it is stored in the cipher dir.
  for (const fs::path& f : FilesBelow(cipher)) {
    EXPECT_FALSE(Contains(ReadFile(f), shown.substr(0, 14))) << f;
  }
  // Typed back on standard input, with spaces for dashes.
  std::string typed = shown;
  for (char& c : typed) c = c == '-' ? ' ' : c;
  CommandResult list = RunCommand("printf '%s\\n' '" + typed + "' | " + kCtl +
                                  " keys list --recovery-key - " + Quote(cipher));
  EXPECT_EQ(0, list.exit_code) << list.output;
  std::string wrong = shown;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  ExpectOneLine(
      "printf '%s\\n' '" + wrong + "' | " + kCtl + " keys list --recovery-key - " + Quote(cipher),
      3, "wrong key");
  ExpectOneLine("printf 'not a key\\n' | " + kCtl + " keys list --recovery-key - " + Quote(cipher),
                2, "does not hold a recovery key");
}

TEST(MasterSlotsCli, AnHsmSlotBesideAKeyFileOpensTheVolume) {
  SoftHsm hsm;
  MountedVolume v;
  WriteFile(v / "a.txt", "two ways in");
  v.Unmount();
  CommandResult added =
      RunCommand(kCtl + " keys add-master --keyfile " + Quote(v.keyfile()) +
                 hsm.Flags("k1", "new-") + "--pkcs11-create-key " + Quote(v.cipher()));
  ASSERT_EQ(0, added.exit_code) << added.output;
  v.set_key_flags(hsm.Flags("k1"));
  v.Mount();
  EXPECT_EQ("two ways in", ReadFile(v / "a.txt"));
  v.Unmount();
  const std::vector<json> events = AuditLines(v.cipher() / "envelopefs.audit.log");
  const json* event = FindEvent(events, "master_slot_added");
  ASSERT_NE(nullptr, event);
  EXPECT_EQ("pkcs11", event->value("source", ""));
  // Changing one of two slots keeps the keyring key: the message says what that means.
  TempDir t;
  const fs::path key2 = t.path() / "key2";
  WriteSecretFile(key2, std::string(32, 'n'));
  CommandResult changed = RunCommand(kCtl + " keys change-master --keyfile " + Quote(v.keyfile()) +
                                     " --new-keyfile " + Quote(key2) + " " + Quote(v.cipher()));
  ASSERT_EQ(0, changed.exit_code) << changed.output;
  EXPECT_TRUE(Contains(changed.output, "still opens this keyring")) << changed.output;
}

TEST(MasterSlotsCli, RetireWithDestroyOldMasterLeavesNoOldKeyringCopyThatOpens) {
  SoftHsm hsm;
  MountedVolume v({"--pkcs11-create-key", "", hsm.Flags("k1")});
  WriteFile(v / "a.txt", "before the rotation");
  v.Unmount();
  const fs::path keyring = v.cipher() / "envelopefs.keyring";
  const std::string old_copy = ReadFile(keyring);  // e.g. in last night's backup
  const std::string hsm_key = hsm.Flags("k1");
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + hsm_key + Quote(v.cipher())).exit_code);
  ASSERT_EQ(0, RunCommand(kCtl + " rewrap" + hsm_key + Quote(v.cipher())).exit_code);

  // With another slot beside the HSM's, refused: that slot would still open old copies.
  TempDir t;
  const fs::path recovery = t.path() / "recovery";
  ASSERT_EQ(0, RunCommand(kCtl + " keys add-master" + hsm_key + "--new-recovery-key -o " +
                          Quote(recovery) + " " + Quote(v.cipher()))
                   .exit_code);
  const std::string with_recovery = ReadFile(keyring);
  ExpectOneLine(
      kCtl + " keys retire --kek-version 1 --destroy-old-master" + hsm_key + Quote(v.cipher()), 8,
      "would still open old copies");
  EXPECT_EQ(with_recovery, ReadFile(keyring));
  ASSERT_EQ(
      0, RunCommand(kCtl + " keys remove-master --slot 2" + hsm_key + Quote(v.cipher())).exit_code);

  CommandResult retired = RunCommand(kCtl + " keys retire --kek-version 1 --destroy-old-master" +
                                     hsm_key + Quote(v.cipher()));
  ASSERT_EQ(0, retired.exit_code) << retired.output;
  EXPECT_TRUE(Contains(retired.output, "PKCS#11 key \"k1-g5\"")) << retired.output;
  EXPECT_TRUE(Contains(retired.output, "destroyed pkcs11 token \"envtest\" key \"k1\""))
      << retired.output;
  CommandResult objects = hsm.Tool("--list-objects --type secrkey");
  EXPECT_TRUE(Contains(objects.output, "label:      k1-g5")) << objects.output;
  EXPECT_FALSE(Contains(objects.output, "label:      k1\n")) << objects.output;

  // The volume opens with the new token key and reads what it held.
  v.set_key_flags(hsm.Flags("k1-g5"));
  v.Mount();
  EXPECT_EQ("before the rotation", ReadFile(v / "a.txt"));
  v.Unmount();
  json list = json::parse(
      RunCommand(kCtl + " keys list --json" + hsm.Flags("k1-g5") + Quote(v.cipher())).output);
  EXPECT_EQ(0u, list["old_master_keys_to_destroy"].size()) << list.dump();

  // The old copy of the keyring, put back, opens with nothing: its token key is gone.
  WriteFile(keyring, old_copy);
  ExpectOneLine(kCtl + " keys list" + hsm_key + Quote(v.cipher()), 2,
                "has no AES key labelled \"k1\"");
  ExpectOneLine(kCtl + " keys list" + hsm.Flags("k1-g5") + Quote(v.cipher()), 2,
                "not key \"k1-g5\"");
  std::vector<json> events = AuditLines(v.cipher() / "envelopefs.audit.log");
  const json* destroyed = FindEvent(events, "old_master_destroyed");
  ASSERT_NE(nullptr, destroyed);
  EXPECT_EQ("pkcs11 token \"envtest\" key \"k1\"", destroyed->value("destroyed", ""));

  // A key file, passphrase, command or recovery key cannot be destroyed: refused, unchanged.
  MountedVolume file_volume;
  file_volume.Unmount();
  ExpectOneLine(kCtl + " keys retire --kek-version 1 --destroy-old-master --keyfile " +
                    Quote(file_volume.keyfile()) + " " + Quote(file_volume.cipher()),
                2, "cannot be destroyed by envelopectl");
}

// A crash between the keyring replacement and the destruction of the old token key (simulated:
// the replacement done in-process, as retire --destroy-old-master does it, and no destruction)
// leaves the old key recorded: keys list --check fails until keys destroy-old-master ends it.
TEST(MasterSlotsCli, AnOldMasterKeyLeftByACrashIsListedUntilDestroyOldMasterDestroysIt) {
  SoftHsm hsm;
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  {
    auto volume = Volume::Create(cipher, {}, *hsm.Source("k1"));
    volume->UpdateKeyring([](Keyring& k) { k.Rotate(1000); });
    std::vector<MasterKeyParams> pending =
        volume->ReplaceOnlyMasterSlot(*hsm.Source("k2"), [](Keyring& k) { k.Retire(1); });
    ASSERT_EQ(1u, pending.size());
    EXPECT_EQ("k1", pending[0].pkcs11->key_label);
  }
  const std::string list = kCtl + " keys list --check" + hsm.Flags("k2") + Quote(cipher);
  CommandResult before = RunCommand(list);
  EXPECT_EQ(9, before.exit_code) << before.output;
  EXPECT_TRUE(Contains(before.output, "old master key not yet destroyed: PKCS#11 key \"k1\""))
      << before.output;
  EXPECT_TRUE(Contains(before.output, "1 old master key is not destroyed yet")) << before.output;
  // Without a key: the same record, marked as the keyring's claim.
  CommandResult claimed = RunCommand(kCtl + " keys list " + Quote(cipher));
  EXPECT_TRUE(Contains(claimed.output,
                       "old master key not yet destroyed (as claimed, not authenticated): "
                       "PKCS#11 key \"k1\""))
      << claimed.output;
  // Nothing to do without a key: listing the claims works, destroying needs the token.
  CommandResult destroyed =
      RunCommand(kCtl + " keys destroy-old-master" + hsm.Flags("k2") + Quote(cipher));
  ASSERT_EQ(0, destroyed.exit_code) << destroyed.output;
  EXPECT_TRUE(Contains(destroyed.output, "destroyed pkcs11 token \"envtest\" key \"k1\""))
      << destroyed.output;
  CommandResult after = RunCommand(list);
  EXPECT_FALSE(Contains(after.output, "old master key")) << after.output;
  CommandResult objects = hsm.Tool("--list-objects --type secrkey");
  EXPECT_FALSE(Contains(objects.output, "label:      k1\n")) << objects.output;
  EXPECT_TRUE(Contains(objects.output, "label:      k2")) << objects.output;
  // Again: nothing left to destroy.
  ExpectOneLine(kCtl + " keys destroy-old-master" + hsm.Flags("k2") + Quote(cipher), 0,
                "no old master key");
  // The current key is never destroyed, even when a forged or stale record names it: the
  // record is authenticated, so only a keyring change could add it; refused all the same.
  {
    auto volume = Volume::Open(cipher, *hsm.Source("k2"));
    volume->UpdateKeyring([](Keyring& k) { k.AddPendingDestroy(k.slots().front().params); });
  }
  ExpectOneLine(kCtl + " keys destroy-old-master" + hsm.Flags("k2") + Quote(cipher) + " 2>&1", 6,
                "still protects master slot 1");
  EXPECT_TRUE(Contains(hsm.Tool("--list-objects --type secrkey").output, "label:      k2"));
}

// Review (fails today, so DISABLED_: run with --gtest_also_run_disabled_tests): two volumes
// initialised with the same token key (init --pkcs11-create-key uses a key that exists). Retiring
// with --destroy-old-master in one destroys the key the other's keyring depends on: the other
// volume is lost. Nothing binds a token key to one volume, so nothing can refuse.
TEST(MasterSlotsCli, DestroyOldMasterNeverDestroysAKeyAnotherVolumeDependsOn) {
  SoftHsm hsm;
  TempDir t;
  const fs::path a = t.path() / "a", b = t.path() / "b", c = t.path() / "c";
  const std::string k1 = hsm.Flags("k1");
  ASSERT_EQ(0, RunCommand(kCtl + " init" + k1 + "--pkcs11-create-key " + Quote(a)).exit_code);
  // A token key envelopefs made for volume A (its CKA_ID) is never taken by another volume.
  ExpectOneLine(kCtl + " init" + k1 + "--pkcs11-create-key " + Quote(b), 2,
                "was created for envelopefs volume");
  EXPECT_FALSE(fs::exists(b / "envelopefs.keyring"));
  // A key made outside envelopefs may be shared by volumes, but is then never destroyed by one.
  ASSERT_EQ(0, hsm.Tool("--keygen --key-type AES:32 --label shared --sensitive").exit_code);
  const std::string shared = hsm.Flags("shared");
  ASSERT_EQ(0, RunCommand(kCtl + " init" + shared + Quote(b)).exit_code);
  ASSERT_EQ(0, RunCommand(kCtl + " init" + shared + Quote(c)).exit_code);
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + shared + Quote(b)).exit_code);
  const std::string before = ReadFile(b / "envelopefs.keyring");
  ExpectOneLine(kCtl + " keys retire --kek-version 1 --destroy-old-master" + shared + Quote(b), 2,
                "did not create it for this volume");
  EXPECT_EQ(before, ReadFile(b / "envelopefs.keyring"));  // nothing changed
  EXPECT_EQ(0, RunCommand(kCtl + " keys list" + shared + Quote(c)).exit_code);
  // A's own key is destroyed by A's retirement, and B and C still open.
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + k1 + Quote(a)).exit_code);
  CommandResult retired =
      RunCommand(kCtl + " keys retire --kek-version 1 --destroy-old-master" + k1 + Quote(a));
  EXPECT_EQ(0, retired.exit_code) << retired.output;
  EXPECT_EQ(0, RunCommand(kCtl + " keys list" + shared + Quote(b)).exit_code);
  EXPECT_EQ(0, RunCommand(kCtl + " keys list" + shared + Quote(c)).exit_code);
}

// Review: the successor token key's label is derived ("LABEL-gN")
// and an existing key of that label is used as it is. When it is the current key itself (a
// volume whose key happens to be labelled "k1-g3", retired at generation 2), the "new" master key
// is protected by the old token key: the KEK is retired, the old key is not destroyed (it still
// protects the keyring), old copies of the keyring still open, and the pending entry can never be
// cleared. Expected: refused before anything changes, or a key that did not exist before.
TEST(MasterSlotsCli, DestroyOldMasterNeverReusesTheCurrentTokenKeyAsItsSuccessor) {
  SoftHsm hsm;
  TempDir t;
  const fs::path a = t.path() / "a";
  const std::string key = hsm.Flags("k1-g3");
  ASSERT_EQ(0, RunCommand(kCtl + " init" + key + "--pkcs11-create-key " + Quote(a)).exit_code);
  const std::string old_copy = ReadFile(a / "envelopefs.keyring");
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + key + Quote(a)).exit_code);
  ASSERT_EQ(0, RunCommand(kCtl + " rewrap" + key + Quote(a)).exit_code);
  CommandResult retired =
      RunCommand(kCtl + " keys retire --kek-version 1 --destroy-old-master" + key + Quote(a));
  if (retired.exit_code != 0) {
    // Refused: then nothing may have changed (KEK 1 still decrypt-only, nothing pending).
    json list = json::parse(RunCommand(kCtl + " keys list --json" + key + Quote(a)).output);
    EXPECT_EQ(0u, list["old_master_keys_to_destroy"].size()) << retired.output << list.dump();
    EXPECT_EQ("decrypt-only", list["keys"][0].value("state", "")) << list.dump();
    EXPECT_TRUE(Contains(retired.output, "the key it replaces")) << retired.output;
  } else {
    // Done: the old copy opens no more.
    WriteFile(a / "envelopefs.keyring", old_copy);
    EXPECT_NE(0, RunCommand(kCtl + " keys list" + key + Quote(a)).exit_code) << retired.output;
  }
}

}  // namespace
}  // namespace envelopefs::testing
