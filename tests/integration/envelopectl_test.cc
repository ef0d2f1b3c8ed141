// Tests of envelopectl's subcommands, run as a separate process on real volumes: exit codes,
// inspect, audit, decrypt, ls, the master key and the audit log. Offline tests build volumes
// with OfflineVolume (no FUSE). Keys and rewrap are in envelopectl_keys_test.cc, verify in
// envelopectl_verify_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "envelopectl_fixture.h"

namespace envelopefs::testing {
namespace {

// --- exit codes and bad input ----------------------------------------------------------------

TEST(Envelopectl, BadInputGivesOneLineAndTheDocumentedExitCode) {
  OfflineVolume v;
  v.Write("a", "hello");
  TempDir t;
  WriteSecretFile(t.path() / "wrong", std::string(32, 'x'));
  CommandResult wrong = RunCommand(kCtl + " keys list " + Quote(v.cipher()) + " --keyfile " +
                                   Quote(t.path() / "wrong"));
  EXPECT_EQ(3, wrong.exit_code) << wrong.output;
  EXPECT_EQ(1u, Lines(wrong.output).size()) << wrong.output;

  CommandResult unknown = RunCommand(v.Ctl("verify --frobnicate " + Quote(v.cipher())));
  EXPECT_EQ(2, unknown.exit_code) << unknown.output;
  EXPECT_EQ(1u, Lines(unknown.output).size()) << unknown.output;
  EXPECT_EQ(2, RunCommand(kCtl + " frobnicate").exit_code);
  EXPECT_EQ(2, RunCommand(v.Ctl("keys " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ(2, RunCommand(v.Ctl("keys change-master " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ(2, RunCommand(v.Ctl("keys retire " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ(2, RunCommand(v.Ctl("rewrap " + Quote(v.cipher()) + " --shard 3/2")).exit_code);

  WriteFile(t.path() / "garbage", RandomString(5000, 7));
  CommandResult garbage = RunCommand(kCtl + " inspect " + Quote(t.path() / "garbage"));
  // Outside any volume: a usage error (envelopectl_messages_test.cc has the other cases).
  EXPECT_EQ(2, garbage.exit_code) << garbage.output;
  EXPECT_EQ(1u, Lines(garbage.output).size()) << garbage.output;
  EXPECT_NE(std::string::npos, garbage.output.find("not an envelopefs cipher file"))
      << garbage.output;

  CommandResult not_volume = RunCommand(v.Ctl("verify " + Quote(t.path())));
  EXPECT_EQ(4, not_volume.exit_code) << not_volume.output;
}

TEST(Envelopectl, KeysListCheckPassesOnAFreshVolume) {
  OfflineVolume v;
  int rc = -1;
  json j = CtlJson(v, "keys list --check " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc);
  ASSERT_EQ(1u, j["keys"].size());
  EXPECT_EQ(90, j["rotate_after_days"]);
  const json& k = j["keys"][0];
  EXPECT_EQ(1, k["version"]);
  EXPECT_EQ("active", k["state"]);
  EXPECT_EQ(0, k["age_days"]);
  EXPECT_FALSE(k["overdue"].get<bool>());
  EXPECT_TRUE(k["rotation_due"].is_string());
  EXPECT_EQ('Z', k["created"].get<std::string>().back());
  // The policy changes with the key only (it is authenticated); the overdue path is
  // unit-tested (key_policy_test.cc) since the creation time cannot be faked.
  ASSERT_EQ(0,
            RunCommand(v.Ctl("keys policy --rotate-after-days 1 " + Quote(v.cipher()))).exit_code);
  j = CtlJson(v, "keys list --check " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc);
  EXPECT_EQ(1, j["rotate_after_days"]);
  // An edit of the files is not a policy change: it breaks the keyring's authentication.
  std::string keyring = ReadFile(v.cipher() / "envelopefs.keyring");
  keyring.replace(keyring.find("rotate_after_days = 1"), 21, "rotate_after_days = 9");
  WriteFile(v.cipher() / "envelopefs.keyring", keyring);
  EXPECT_EQ(4, RunCommand(v.Ctl("keys list " + Quote(v.cipher()))).exit_code);
}

// --- inspect ---------------------------------------------------------------------------------

TEST(Envelopectl, InspectShowsTheHeaderAndChecksItWithTheKey) {
  OfflineVolume v;
  fs::path a = v.Write("dir/a", RandomString(3 * kChunk + 10, 1));
  fs::path b = v.Write("b", "x");
  json j = json::parse(RunCommand(kCtl + " inspect --json " + Quote(a)).output);
  EXPECT_EQ(2, j["format_version"]);
  EXPECT_EQ(4096, j["chunk_size"]);
  EXPECT_EQ("AES-256-GCM", j["cipher"]);
  EXPECT_EQ(32u, j["file_id"].get<std::string>().size());
  EXPECT_EQ(1, j["kek_version"]);
  EXPECT_EQ(3 * kChunk + 10, j["plaintext_size"]);
  EXPECT_EQ(4, j["chunks"]);
  EXPECT_TRUE(j["header_ok"].is_null());
  EXPECT_TRUE(j["dek_fingerprint"].is_null());

  // With the key: the volume is found by walking up from the file.
  int rc = -1;
  json ka = CtlJson(v, "inspect " + Quote(a), &rc);
  EXPECT_EQ(0, rc);
  EXPECT_TRUE(ka["header_ok"].get<bool>());
  EXPECT_TRUE(ka["sealed"].get<bool>());
  EXPECT_EQ(16u, ka["dek_fingerprint"].get<std::string>().size());
  json kb = CtlJson(v, "inspect " + Quote(b));
  EXPECT_NE(ka["dek_fingerprint"], kb["dek_fingerprint"]);
  EXPECT_NE(ka["file_id"], kb["file_id"]);

  CommandResult text = RunCommand(v.Ctl("inspect " + Quote(a)));
  EXPECT_EQ(0, text.exit_code);
  EXPECT_NE(std::string::npos, text.output.find("header:          authentic")) << text.output;
  EXPECT_NE(std::string::npos, text.output.find("key slot 1:")) << text.output;

  // A damaged state record: header_ok false, exit 5.
  WriteBytesAt(a, StateSlotOffset(format::kFormatVersion, 0) + 30, {0xff, 0xff});
  WriteBytesAt(a, StateSlotOffset(format::kFormatVersion, 1) + 30, {0xff, 0xff});
  ka = CtlJson(v, "inspect " + Quote(a), &rc);
  EXPECT_EQ(5, rc);
  EXPECT_FALSE(ka["header_ok"].get<bool>());
}
// --- audit -----------------------------------------------------------------------------------

TEST(Envelopectl, AuditCountsWhatWasCreated) {
  OfflineVolume v;
  for (int i = 0; i < 12; ++i) v.Write("a/f" + std::to_string(i), RandomString(100, 1 + i));
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  for (int i = 0; i < 5; ++i) v.Write("b/g" + std::to_string(i), "new");
  v.Link("a/f0", "b/hardlink");  // one inode, two names: not a duplicate
  v.Symlink("b/link", "a/f1");
  v.Write("b/" + std::string(200, 'l'), "a long name is stored as envelopefs.long.*");

  int rc = -1;
  json j = CtlJson(v, "audit " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc) << j.dump(2);
  EXPECT_EQ(19, j["files"]);
  EXPECT_EQ(18, j["inodes"]);
  EXPECT_EQ((json{{"1", 13}, {"2", 6}}), j["by_kek_version"]);
  EXPECT_EQ(json::array(), j["duplicate_deks"]);
  EXPECT_EQ(json::array(), j["duplicate_file_ids"]);
  EXPECT_EQ(json::array(), j["unencrypted"]);
  EXPECT_EQ(json::array(), j["damaged"]);
  EXPECT_EQ(json::array(), j["bad_names"]);
  EXPECT_EQ((json{{"4096", 19}}), j["chunk_sizes"]);
  EXPECT_EQ((json{{"AES-256-GCM", 19}}), j["ciphers"]);
  ASSERT_EQ(2u, j["keys"].size());
  EXPECT_EQ("active", j["keys"][1]["state"]);

  // Planted plaintext files (a text file copied in), a copied cipher file, an empty file.
  WriteFile(v.cipher() / "notes.txt", "secret plaintext\n");
  WriteFile(v.CipherPath("a") / "report.csv", "a,b,c\n");
  fs::copy_file(v.CipherPath("a/f3"), v.CipherPath("b") / "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  WriteFile(v.cipher() / "EMPTYEMPTYEMPTYEMPTYEMPTYEMPTY12", "");
  j = CtlJson(v, "audit " + Quote(v.cipher()), &rc);
  EXPECT_EQ(5, rc);
  EXPECT_EQ(23, j["files"]);
  std::set<std::string> unencrypted(j["unencrypted"].begin(), j["unencrypted"].end());
  EXPECT_EQ((std::set<std::string>{(v.cipher() / "notes.txt").string(),
                                   (v.CipherPath("a") / "report.csv").string()}),
            unencrypted);
  EXPECT_EQ(1u, j["duplicate_file_ids"].size()) << j.dump(2);
  EXPECT_EQ(2u, j["duplicate_file_ids"][0].size());
  EXPECT_EQ(1u, j["duplicate_deks"].size());
  ASSERT_EQ(1u, j["damaged"].size());
  EXPECT_NE(std::string::npos, j["damaged"][0]["reason"].get<std::string>().find("empty"));
  EXPECT_EQ(4u, j["bad_names"].size()) << "none of the planted names authenticates";

  // Without the key: header facts only; the copy shows as a duplicate wrapped DEK.
  CommandResult keyless = RunCommand(kCtl + " audit --json " + Quote(v.cipher()) + " 2>/dev/null");
  EXPECT_EQ(5, keyless.exit_code);
  json k = json::parse(keyless.output);
  EXPECT_FALSE(k["key_given"].get<bool>());
  EXPECT_TRUE(k["duplicate_deks"].is_null());
  EXPECT_EQ(1u, k["duplicate_wrapped_deks"].size());
  EXPECT_EQ(j["unencrypted"].size(), k["unencrypted"].size());
  EXPECT_FALSE(k["policy_authenticated"].get<bool>()) << "without the key nothing vouches for it";
  EXPECT_TRUE(j["policy_authenticated"].get<bool>());
  EXPECT_EQ(j["keys"], k["keys"]) << "the keyring as stored, read without the key";
  EXPECT_FALSE(k["rotation_overdue"].get<bool>());
  EXPECT_TRUE(k["bad_names"].is_null());
  EXPECT_EQ(j["files"], k["files"]) << "the long-named file is a file, not an internal one";
  EXPECT_EQ(j["by_kek_version"], k["by_kek_version"]);

  CommandResult text = RunCommand(v.Ctl("audit " + Quote(v.cipher())));
  EXPECT_EQ(5, text.exit_code);
  EXPECT_NE(std::string::npos, text.output.find("PROBLEMS FOUND")) << text.output;
  EXPECT_NE(std::string::npos, text.output.find("notes.txt")) << text.output;
}

// audit streams the walk and keeps 8-byte fingerprints of file ids and DEKs: a file whose id
// shares only its first 8 bytes with another's is looked at again and is no duplicate; real
// copies are found, hard links count once, and the report is the same for any --jobs.
TEST(Envelopectl, AuditFindsExactDuplicatesWithAnyJobCount) {
  OfflineVolume v;
  for (int i = 0; i < 300; ++i) {
    v.Write("d" + std::to_string(i % 6) + "/f" + std::to_string(i), std::to_string(i));
  }
  const fs::path original = v.CipherPath("d0/f0");
  const fs::path copy1 = v.CipherPath("d3") / "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  const fs::path copy2 = v.cipher() / "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
  fs::copy_file(original, copy1);
  fs::copy_file(original, copy2);
  v.Link("d0/f0", "d5/hardlink");  // a second name of the original's inode: no duplicate
  const fs::path hardlink = v.CipherPath("d5/hardlink");
  // The first 8 bytes of d1/f1's file id, the last 8 changed: its header no longer
  // authenticates (damaged), and its file id is another one.
  const fs::path near = v.CipherPath("d2") / "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
  fs::copy_file(v.CipherPath("d1/f1"), near);
  WriteBytesAt(near, format::kFileIdOffset + 8, std::vector<uint8_t>(8, 0x5a));

  json first;
  for (int jobs : {1, 3, 8}) {
    int rc = -1;
    json j = CtlJson(v, "audit --jobs " + std::to_string(jobs) + " " + Quote(v.cipher()), &rc);
    EXPECT_EQ(5, rc);
    EXPECT_EQ(304, j["files"]);
    EXPECT_EQ(303, j["inodes"]);
    ASSERT_EQ(1u, j["duplicate_file_ids"].size()) << j["duplicate_file_ids"].dump(2);
    // The original's inode is named once, by whichever of its names the walk meets first.
    std::set<std::string> got(j["duplicate_file_ids"][0].begin(), j["duplicate_file_ids"][0].end());
    EXPECT_EQ(3u, got.size());
    EXPECT_EQ(1u, got.count(copy1.string()));
    EXPECT_EQ(1u, got.count(copy2.string()));
    EXPECT_EQ(1u, got.count(original.string()) + got.count(hardlink.string()))
        << j["duplicate_file_ids"].dump(2);
    ASSERT_EQ(1u, j["duplicate_deks"].size()) << j["duplicate_deks"].dump(2);
    EXPECT_EQ(j["duplicate_file_ids"][0], j["duplicate_deks"][0]);
    ASSERT_EQ(1u, j["damaged"].size());
    EXPECT_EQ(near.string(), j["damaged"][0]["cipher_path"]);
    j.erase("timestamp");
    j.erase("audit_log");
    if (first.is_null()) first = j;
    EXPECT_EQ(first, j) << "--jobs " << jobs << " reports the same, in the same order";
  }
  // Without the key the near copy's wrapped DEK record is the one of d1/f1: a duplicate.
  CommandResult keyless =
      RunCommand(kCtl + " audit --json --jobs 3 " + Quote(v.cipher()) + " 2>/dev/null");
  json k = json::parse(keyless.output);
  EXPECT_EQ(2u, k["duplicate_wrapped_deks"].size()) << k["duplicate_wrapped_deks"].dump(2);
  EXPECT_EQ(first["duplicate_file_ids"], k["duplicate_file_ids"]);
}

TEST(Envelopectl, PlaintextNamesVolumesWorkWithEveryCommand) {
  OfflineVolume v("--plaintext-names --chunk-size 4096");
  std::map<std::string, std::string> files = {
      {"a.txt", "alpha"}, {"sub/envelopefs.notes", "an ordinary name in a subdirectory"}};
  for (const auto& [name, content] : files) v.Write(name, content);
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  json rewrap = CtlJson(v, "rewrap " + Quote(v.cipher()));
  EXPECT_EQ(2, rewrap["rewrapped"]) << rewrap.dump();
  for (const auto& [name, content] : files) EXPECT_TRUE(BothSlotsOn(v.cipher() / name, 2)) << name;
  EXPECT_EQ(0, RunCommand(v.Ctl("keys retire --version 1 " + Quote(v.cipher()))).exit_code);
  int rc = -1;
  json audit = CtlJson(v, "audit " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc) << audit.dump();
  EXPECT_EQ(2, audit["files"]);
  json keyless = json::parse(RunCommand(kCtl + " audit --json " + Quote(v.cipher())).output);
  EXPECT_EQ(2, keyless["files"]);
  EXPECT_EQ(json::array(), keyless["bad_names"]);
  EXPECT_EQ(0, RunCommand(v.Ctl("verify " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ((std::set<std::string>{"a.txt", "sub/", "sub/envelopefs.notes"}),
            Lines(RunCommand(v.Ctl("ls " + Quote(v.cipher()))).output));
  fs::path out = v.root() / "out";
  ASSERT_EQ(0, RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(out))).exit_code);
  EXPECT_EQ(files, TreeContents(out));
}

// --- decrypt and ls --------------------------------------------------------------------------

TEST(Envelopectl, DecryptOfACopiedVolumeRestoresTheTreeAndLsListsTheNames) {
  OfflineVolume v;
  std::map<std::string, std::string> files = {
      {"top.txt", "top level\n"},
      {"docs/readme.md", RandomString(3 * kChunk + 5, 1)},
      {"docs/deep/er/x.bin", RandomString(kChunk, 2)},
      {"empty", ""},
      {std::string(180, 'L') + ".long", "a long name"},
  };
  for (const auto& [name, content] : files) v.Write(name, content);
  v.Mkdir("emptydir");
  v.Symlink("docs/link", "../top.txt");
  fs::path mode_file = v.CipherPath("docs/readme.md");
  ASSERT_EQ(0, chmod(mode_file.c_str(), 0640));
  const struct timespec times[2] = {{1600000000, 0}, {1600000000, 0}};
  ASSERT_EQ(0, utimensat(AT_FDCWD, mode_file.c_str(), times, 0));

  fs::path copy = v.root() / "copy";
  ASSERT_EQ(0, RunCommand("cp -a " + Quote(v.cipher()) + " " + Quote(copy)).exit_code);
  fs::path out = v.root() / "restored";
  CommandResult r = RunCommand(v.Ctl("decrypt " + Quote(copy) + " -o " + Quote(out)));
  ASSERT_EQ(0, r.exit_code) << r.output;
  EXPECT_EQ(files, TreeContents(out));
  EXPECT_EQ("../top.txt", fs::read_symlink(out / "docs/link").string());
  EXPECT_TRUE(fs::is_directory(out / "emptydir"));
  struct stat st;
  ASSERT_EQ(0, stat((out / "docs/readme.md").c_str(), &st));
  EXPECT_EQ(0640u, st.st_mode & 07777);
  EXPECT_EQ(1600000000, st.st_mtim.tv_sec);

  CommandResult ls = RunCommand(v.Ctl("ls " + Quote(copy)));
  ASSERT_EQ(0, ls.exit_code) << ls.output;
  EXPECT_EQ((std::set<std::string>{"top.txt", "docs/", "docs/readme.md", "docs/deep/",
                                   "docs/deep/er/", "docs/deep/er/x.bin", "docs/link", "empty",
                                   std::string(180, 'L') + ".long", "emptydir/"}),
            Lines(ls.output));
  json lj = CtlJson(v, "ls " + Quote(copy));
  ASSERT_EQ(10u, lj.size());
  for (const json& e : lj) {
    if (e["path"] == "docs/link") {
      EXPECT_EQ("symlink", e["type"]);
    }
    if (e["path"] == "docs") {
      EXPECT_EQ("dir", e["type"]);
    }
    if (e["path"] == "top.txt") {
      EXPECT_EQ("file", e["type"]);
    }
    EXPECT_EQ(0u, e["cipher_path"].get<std::string>().rfind(copy.string(), 0));
  }

  // One file, to stdout and to a file; into a non-empty directory is refused.
  fs::path one = v.CipherPath("docs/readme.md");
  EXPECT_EQ(files["docs/readme.md"],
            RunCommand(v.Ctl("decrypt " + Quote(one)) + " 2>/dev/null").output);
  ASSERT_EQ(
      0, RunCommand(v.Ctl("decrypt " + Quote(one) + " -o " + Quote(v.root() / "one"))).exit_code);
  EXPECT_EQ(files["docs/readme.md"], ReadFile(v.root() / "one"));
  EXPECT_EQ(8, RunCommand(v.Ctl("decrypt " + Quote(copy) + " -o " + Quote(out))).exit_code);
}

TEST(Envelopectl, DecryptNeverLeavesUnauthenticatedPlaintext) {
  OfflineVolume v;
  fs::path a = v.Write("a", RandomString(5 * kChunk, 1));
  v.Write("b", "b content");
  const uint8_t old = ReadBytes(a)[kHeader + 4 * kStride + 7];
  WriteBytesAt(a, kHeader + 4 * kStride + 7, {static_cast<uint8_t>(old ^ 0x01)});  // last chunk
  fs::path out_dir = v.root() / "single";
  fs::create_directories(out_dir);
  CommandResult r = RunCommand(v.Ctl("decrypt " + Quote(a) + " -o " + Quote(out_dir / "a")));
  EXPECT_EQ(5, r.exit_code) << r.output;
  EXPECT_TRUE(fs::is_empty(out_dir)) << "no output and no temp file left behind";

  fs::path tree = v.root() / "tree";
  r = RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(tree)));
  EXPECT_EQ(5, r.exit_code) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("not restored: a")) << r.output;
  EXPECT_FALSE(fs::exists(tree / "a"));
  EXPECT_EQ("b content", ReadFile(tree / "b"));
  EXPECT_EQ(1u, FilesBelow(tree).size());

  // A damaged name: ls reports it and exits 5.
  fs::path b = v.CipherPath("b");
  std::string name = b.filename().string();
  name[2] = name[2] == 'x' ? 'y' : 'x';
  fs::rename(b, b.parent_path() / name);
  CommandResult ls = RunCommand(v.Ctl("ls " + Quote(v.cipher())));
  EXPECT_EQ(5, ls.exit_code);
  EXPECT_NE(std::string::npos, ls.output.find("damaged name")) << ls.output;
}

// --- master key, passphrases, audit log ------------------------------------------------------

TEST(Envelopectl, ChangeMasterKeyAndAuditLogEvents) {
  OfflineVolume v;
  v.Write("f", "data");
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  ASSERT_EQ(0, RunCommand(v.Ctl("rewrap " + Quote(v.cipher()) + " --shard 1/1")).exit_code);
  ASSERT_EQ(0, RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1")).exit_code);

  // To a new key file: the old key stops working (exit 3, logged as unlock_failed).
  fs::path key2 = v.root() / "key2";
  WriteSecretFile(key2, RandomString(32, 77));
  CommandResult change = RunCommand(
      v.Ctl("keys change-master " + Quote(v.cipher()) + " --new-keyfile " + Quote(key2)));
  ASSERT_EQ(0, change.exit_code) << change.output;
  EXPECT_EQ(3, RunCommand(v.Ctl("keys list " + Quote(v.cipher()))).exit_code)
      << "the old key is gone";
  const std::string with_key2 = " --keyfile " + Quote(key2);
  EXPECT_EQ(0, RunCommand(kCtl + " keys list " + Quote(v.cipher()) + with_key2).exit_code);
  // Then to a passphrase.
  fs::path pass = v.root() / "pass";
  WriteSecretFile(pass, "correct horse battery staple\n");
  change = RunCommand("ENVELOPEFS_TEST_FAST_KDF=1 " + kCtl + " keys change-master " +
                      Quote(v.cipher()) + with_key2 + " --new-passfile " + Quote(pass));
  ASSERT_EQ(0, change.exit_code) << change.output;
  CommandResult with_pass = RunCommand(kCtl + " decrypt " + Quote(v.CipherPath("f")) +
                                       " --passfile " + Quote(pass) + " 2>/dev/null");
  EXPECT_EQ(0, with_pass.exit_code);
  EXPECT_EQ("data", with_pass.output);

  std::vector<json> events = AuditLines(v.cipher() / "envelopefs.audit.log");
  const json* rotated = FindEvent(events, "kek_rotated");
  ASSERT_NE(nullptr, rotated);
  EXPECT_EQ(2, (*rotated)["kek_version"]);
  EXPECT_EQ(1, (*rotated)["previous_kek_version"]);
  const json* rewrap = FindEvent(events, "rewrap_finished");
  ASSERT_NE(nullptr, rewrap);
  EXPECT_EQ(1, (*rewrap)["rewrapped"]);
  EXPECT_EQ("1/1", (*rewrap)["shard"]);
  const json* retired = FindEvent(events, "version_retired");
  ASSERT_NE(nullptr, retired);
  EXPECT_EQ(1, (*retired)["kek_version"]);
  EXPECT_NE(nullptr, FindEvent(events, "master_key_changed"));
  EXPECT_NE(nullptr, FindEvent(events, "volume_unlocked"));
  EXPECT_NE(nullptr, FindEvent(events, "unlock_failed"));
  for (const json& e : events) EXPECT_EQ("envelopectl", e["program"]);
}

}  // namespace
}  // namespace envelopefs::testing
