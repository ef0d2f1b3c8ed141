// Tests of envelopectl's subcommands, run as a separate process on real volumes: inspect, keys
// (list, rotate, retire, change-master), rewrap (also killed at random points, and while the
// volume is mounted and being written), verify against each kind of tampering, audit, decrypt,
// ls, exit codes and the audit log. Offline tests build volumes with OfflineVolume (no FUSE);
// the mounted ones use MountedVolume.
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
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "envelopefs/file_format.h"
#include "envelopefs/file_header.h"
#include "mount_fixture.h"
#include "offline_volume.h"

namespace envelopefs::testing {
namespace {

using nlohmann::json;

constexpr uint64_t kHeader = format::kHeaderSize;
constexpr uint64_t kChunk = 4096;
constexpr uint64_t kStride = kChunk + format::kChunkOverhead;

const std::string kCtl = ENVELOPECTL_BINARY;

// Runs envelopectl with the volume's key and parses its standard output as JSON.
json CtlJson(const OfflineVolume& v, const std::string& args, int* exit_code = nullptr) {
  CommandResult r = RunCommand(v.Ctl(args + " --json") + " 2>/dev/null");
  if (exit_code != nullptr) *exit_code = r.exit_code;
  json j = json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.output;
  return j;
}

// Both key slots of a cipher file (no key needed).
std::pair<KeySlotInfo, KeySlotInfo> Slots(const fs::path& cipher) {
  std::vector<uint8_t> b = ReadBytes(cipher);
  if (b.size() < kHeader) return {};
  auto slot = [&](int i) {
    return ParseKeySlot(std::span<const uint8_t, format::kKeySlotSize>(
        b.data() + format::kKeySlotOffset[i], format::kKeySlotSize));
  };
  return {slot(0), slot(1)};
}

bool BothSlotsOn(const fs::path& cipher, uint32_t version) {
  auto [a, b] = Slots(cipher);
  return a.kek_version == version && b.kek_version == version;
}

// Every regular file of `dir` by relative path, with its content.
std::map<std::string, std::string> TreeContents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const fs::path& p : FilesBelow(dir)) out[p.lexically_relative(dir).string()] = ReadFile(p);
  return out;
}

std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.insert(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<json> AuditLines(const fs::path& log) {
  std::vector<json> out;
  for (const std::string& line : Lines(ReadFile(log))) out.push_back(json::parse(line));
  return out;
}

const json* FindEvent(const std::vector<json>& events, const std::string& name) {
  for (const json& e : events) {
    if (e["event"] == name) return &e;
  }
  return nullptr;
}

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

// --- rotation, rewrap, retire ----------------------------------------------------------------

TEST(Envelopectl, RotateThenNewFilesUseTheNewVersionAndOldFilesStillRead) {
  OfflineVolume v;
  const std::string old_content = RandomString(10000, 3);
  fs::path old_file = v.Write("old", old_content);
  CommandResult rotate = RunCommand(v.Ctl("keys rotate " + Quote(v.cipher())));
  ASSERT_EQ(0, rotate.exit_code) << rotate.output;
  EXPECT_NE(std::string::npos, rotate.output.find("version 2 is now active")) << rotate.output;
  fs::path new_file = v.Write("new", "fresh");
  EXPECT_EQ(2, json::parse(
                   RunCommand(kCtl + " inspect --json " + Quote(new_file)).output)["kek_version"]);
  EXPECT_EQ(1, json::parse(
                   RunCommand(kCtl + " inspect --json " + Quote(old_file)).output)["kek_version"]);
  CommandResult read = RunCommand(v.Ctl("decrypt " + Quote(old_file)) + " 2>/dev/null");
  EXPECT_EQ(0, read.exit_code);
  EXPECT_EQ(old_content, read.output);
  json keys = CtlJson(v, "keys list " + Quote(v.cipher()));
  ASSERT_EQ(2u, keys["keys"].size());
  EXPECT_EQ("decrypt-only", keys["keys"][0]["state"]);
  EXPECT_TRUE(keys["keys"][0]["rotation_due"].is_null());
  EXPECT_EQ("active", keys["keys"][1]["state"]);
}

TEST(Envelopectl, RetireIsRefusedUntilRewrapAndThenDestroysTheKey) {
  OfflineVolume v;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 20; ++i) {
    std::string name = "d" + std::to_string(i % 3) + "/f" + std::to_string(i);
    files[name] = RandomString(static_cast<size_t>(i) * 700, static_cast<uint32_t>(i));
    v.Write(name, files[name]);
  }
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ(8, RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 2")).exit_code)
      << "the active version can never be retired";
  CommandResult refused = RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1"));
  EXPECT_EQ(8, refused.exit_code) << refused.output;
  EXPECT_NE(std::string::npos, refused.output.find("still used by 20 files")) << refused.output;
  EXPECT_NE(std::string::npos, refused.output.find("/f")) << "names a file: " << refused.output;
  EXPECT_NE(std::string::npos, refused.output.find("rewrap")) << refused.output;

  CommandResult rewrap = RunCommand(v.Ctl("rewrap " + Quote(v.cipher()) + " --jobs 2"));
  ASSERT_EQ(0, rewrap.exit_code) << rewrap.output;
  EXPECT_NE(std::string::npos, rewrap.output.find("rewrapped 20, already current 0, skipped 0, "
                                                  "failed 0 (20 files in"))
      << rewrap.output;
  CommandResult retire = RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1"));
  ASSERT_EQ(0, retire.exit_code) << retire.output;

  // The keyring file itself no longer holds version 1's wrapped key.
  toml::table keyring = toml::parse_file((v.cipher() / "envelopefs.keyring").string());
  int seen = 0;
  for (const toml::node& node : *keyring["kek"].as_array()) {
    const toml::table& k = *node.as_table();
    if (k["version"].value_or(int64_t{0}) == 1) {
      ++seen;
      EXPECT_EQ("retired", k["state"].value_or(std::string()));
      EXPECT_FALSE(k.contains("wrapped")) << "retired key material still in the keyring";
    } else {
      EXPECT_TRUE(k.contains("wrapped"));
    }
  }
  EXPECT_EQ(1, seen);
  // Every file still reads (all on version 2 now).
  fs::path out = v.root() / "out";
  ASSERT_EQ(0, RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(out))).exit_code);
  EXPECT_EQ(files, TreeContents(out));
  EXPECT_EQ(0, RunCommand(v.Ctl("verify " + Quote(v.cipher()))).exit_code);
  // Retiring again is a no-op; an unknown version is a usage error.
  EXPECT_EQ(0, RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1")).exit_code);
  EXPECT_EQ(2, RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 9")).exit_code);
}

TEST(Envelopectl, RewrapShardsPartitionTheFiles) {
  OfflineVolume v;
  std::vector<fs::path> cipher_files;
  for (int i = 0; i < 40; ++i) {
    cipher_files.push_back(v.Write("s" + std::to_string(i % 4) + "/f" + std::to_string(i), "x"));
  }
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  uint64_t total = 0;
  for (int k = 1; k <= 3; ++k) {
    int rc = -1;
    json j =
        CtlJson(v, "rewrap " + Quote(v.cipher()) + " --shard " + std::to_string(k) + "/3", &rc);
    EXPECT_EQ(0, rc);
    EXPECT_EQ(j["files"], j["rewrapped"]) << "each file belongs to exactly one shard";
    total += j["files"].get<uint64_t>();
  }
  EXPECT_EQ(40u, total);
  for (const fs::path& p : cipher_files) EXPECT_TRUE(BothSlotsOn(p, 2)) << p;
  json again = CtlJson(v, "rewrap " + Quote(v.cipher()));
  EXPECT_EQ(40, again["already_current"]);
  EXPECT_EQ(0, again["rewrapped"]);
}

// Kills `envelopectl rewrap` with SIGKILL after `delay`; true if it was still running.
bool RewrapKilledAfter(const OfflineVolume& v, std::chrono::microseconds delay) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(ENVELOPECTL_BINARY, ENVELOPECTL_BINARY, "rewrap", v.cipher().c_str(), "--keyfile",
          v.keyfile().c_str(), "--jobs", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(delay);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

TEST(Envelopectl, RewrapKilledAtRandomPointsLosesNothingAndFinishesWhenRunAgain) {
  constexpr int kRounds = 20;
  constexpr int kFiles = 200;
  OfflineVolume v;
  std::mt19937 rng(20261122);
  std::map<std::string, std::string> files;
  std::vector<fs::path> cipher_files;
  for (int i = 0; i < kFiles; ++i) {
    std::string name = "d" + std::to_string(i % 7) + "/file" + std::to_string(i);
    files[name] = RandomString(rng() % (3 * kChunk), static_cast<uint32_t>(rng()));
    cipher_files.push_back(v.Write(name, files[name]));
  }
  int interrupted = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint32_t version = static_cast<uint32_t>(round) + 2;
    ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
    auto delay = std::chrono::microseconds(rng() % 50000);
    if (RewrapKilledAfter(v, delay)) {
      size_t done = 0;
      for (const fs::path& p : cipher_files) done += BothSlotsOn(p, version);
      if (done < cipher_files.size()) ++interrupted;
    }
    CommandResult finish = RunCommand(v.Ctl("rewrap " + Quote(v.cipher())));
    ASSERT_EQ(0, finish.exit_code) << finish.output;
    EXPECT_NE(std::string::npos, finish.output.find("failed 0")) << finish.output;
    for (const fs::path& p : cipher_files) ASSERT_TRUE(BothSlotsOn(p, version)) << p;
    // Nothing refers to the previous version any more: it can be retired.
    CommandResult retire = RunCommand(
        v.Ctl("keys retire " + Quote(v.cipher()) + " --version " + std::to_string(version - 1)));
    ASSERT_EQ(0, retire.exit_code) << retire.output;
    fs::path out = v.root() / ("out" + std::to_string(round));
    ASSERT_EQ(0, RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(out))).exit_code);
    ASSERT_EQ(files, TreeContents(out));
    fs::remove_all(out);
  }
  std::printf("rewrap was killed mid-way in %d of %d rounds\n", interrupted, kRounds);
  RecordProperty("interrupted_rounds", interrupted);
}

// --- verify ----------------------------------------------------------------------------------

TEST(Envelopectl, VerifyPassesOnACleanVolume) {
  OfflineVolume v;
  v.Write("a", RandomString(5 * kChunk, 1));
  v.Write("d/e/b", "");
  v.Symlink("d/link", "../a");
  v.Mkdir("empty");
  v.Write(std::string(200, 'n'), "long name");
  int rc = -1;
  json j = CtlJson(v, "verify " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc) << j.dump();
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(3, j["files"]);
  EXPECT_EQ(7, j["entries"]);  // a, d, d/e, d/e/b, d/link, empty, long
  EXPECT_EQ(5 * kChunk + 9, j["bytes"]);
  CommandResult text = RunCommand(v.Ctl("verify " + Quote(v.cipher())));
  EXPECT_EQ(0, text.exit_code);
  EXPECT_NE(std::string::npos, text.output.find("0 damaged")) << text.output;
}

struct Tamper {
  const char* name;
  // Applies the change to the cipher dir; a and b are five-chunk files, "a" is the victim.
  std::function<void(OfflineVolume&, const fs::path& a, const fs::path& b)> apply;
  bool names_the_plaintext = true;  // false when the name itself is what is damaged
};

void PrintTo(const Tamper& tamper, std::ostream* os) { *os << tamper.name; }  // test names

std::vector<uint8_t> Bytes(const fs::path& p, uint64_t offset, size_t n) {
  std::vector<uint8_t> all = ReadBytes(p);
  return std::vector<uint8_t>(all.begin() + static_cast<long>(offset),
                              all.begin() + static_cast<long>(offset + n));
}

const Tamper kTampers[] = {
    {"FlippedBitInAChunk",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       std::vector<uint8_t> byte = Bytes(a, kHeader + kStride + 100, 1);
       byte[0] ^= 0x04;
       WriteBytesAt(a, kHeader + kStride + 100, byte);
     }},
    {"TwoChunksSwapped",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       std::vector<uint8_t> c1 = Bytes(a, kHeader + kStride, kStride);
       std::vector<uint8_t> c2 = Bytes(a, kHeader + 2 * kStride, kStride);
       WriteBytesAt(a, kHeader + kStride, c2);
       WriteBytesAt(a, kHeader + 2 * kStride, c1);
     }},
    {"ChunkCopiedFromAnotherFile",
     [](OfflineVolume&, const fs::path& a, const fs::path& b) {
       WriteBytesAt(a, kHeader + kStride, Bytes(b, kHeader + kStride, kStride));
     }},
    {"HeaderCopiedFromAnotherFile",
     [](OfflineVolume&, const fs::path& a, const fs::path& b) {
       WriteBytesAt(a, 0, Bytes(b, 0, kHeader));
     }},
    {"ChunkZeroed",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       WriteBytesAt(a, kHeader + 2 * kStride, std::vector<uint8_t>(kStride, 0));
     }},
    {"FileCutAtAChunkBoundary",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       ASSERT_EQ(0, truncate(a.c_str(), static_cast<off_t>(kHeader + 3 * kStride)));
     }},
    {"KeySlotsDamaged",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       // Flip a bit of each wrapped DEK (setting a byte could leave it as it was).
       const std::vector<uint8_t> bytes = ReadBytes(a);
       for (size_t slot : format::kKeySlotOffset) {
         WriteBytesAt(a, slot + 40, {static_cast<uint8_t>(bytes[slot + 40] ^ 0x55)});
       }
     }},
    {"DamagedName",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       std::string name = a.filename().string();
       name[3] = name[3] == 'A' ? 'B' : 'A';  // still base64url, no longer authentic
       fs::rename(a, a.parent_path() / name);
     },
     false},
};

class VerifyTamper : public ::testing::TestWithParam<Tamper> {};

TEST_P(VerifyTamper, IsDetectedAndNamesTheFile) {
  OfflineVolume v;
  fs::path a = v.Write("dir/victim", RandomString(5 * kChunk, 11));
  fs::path b = v.Write("dir/other", RandomString(5 * kChunk, 12));
  v.Write("fine", "intact");
  GetParam().apply(v, a, b);
  int rc = -1;
  json j = CtlJson(v, "verify " + Quote(v.cipher()), &rc);
  EXPECT_EQ(5, rc) << j.dump();
  EXPECT_FALSE(j["ok"].get<bool>());
  ASSERT_EQ(1u, j["damaged"].size()) << j.dump();
  const json& d = j["damaged"][0];
  if (GetParam().names_the_plaintext) {
    EXPECT_EQ("dir/victim", d["path"]) << d.dump();
    EXPECT_EQ(a.string(), d["cipher_path"]) << d.dump();
  } else {
    EXPECT_TRUE(d["path"].is_null()) << d.dump();
    EXPECT_NE(std::string::npos, d["reason"].get<std::string>().find("name")) << d.dump();
  }
  EXPECT_FALSE(d["reason"].get<std::string>().empty());
  // Recorded in the audit log (on by default) by cipher path, never by plaintext name.
  std::vector<json> events = AuditLines(v.cipher() / "envelopefs.audit.log");
  const json* tamper = FindEvent(events, "tamper_detected");
  ASSERT_NE(nullptr, tamper);
  EXPECT_EQ(d["cipher_path"], (*tamper)["file"]);
  EXPECT_EQ(std::string::npos, tamper->dump().find("victim")) << tamper->dump();
  CommandResult text = RunCommand(v.Ctl("verify " + Quote(v.cipher())));
  EXPECT_EQ(5, text.exit_code);
  EXPECT_NE(std::string::npos, text.output.find("DAMAGED ")) << text.output;
  EXPECT_EQ(std::string::npos, text.output.find("tamper:")) << "library lines are captured";
}

INSTANTIATE_TEST_SUITE_P(Envelopectl, VerifyTamper, ::testing::ValuesIn(kTampers),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Envelopectl, VerifyCatchesDamagedSymlinkTargetsAndDirectoryIvs) {
  OfflineVolume v;
  fs::path link = v.Symlink("link", "target");
  fs::path dir = v.Mkdir("sub");
  v.Write("sub/file", "x");
  fs::remove(link);
  ASSERT_EQ(0, symlink("not-an-encrypted-target", link.c_str()));
  fs::remove(dir / "envelopefs.diriv");
  int rc = -1;
  json j = CtlJson(v, "verify " + Quote(v.cipher()), &rc);
  EXPECT_EQ(5, rc);
  std::set<std::string> reasons;
  for (const json& d : j["damaged"]) reasons.insert(d["reason"].get<std::string>());
  EXPECT_EQ(3u, j["damaged"].size()) << j.dump();  // the link, the dir's IV, the name in it
  EXPECT_TRUE(reasons.count("symlink target does not authenticate")) << j.dump();
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

// --- mounted ---------------------------------------------------------------------------------

std::string MountedCtl(const MountedVolume& v, const std::string& args) {
  return kCtl + " " + args + " --keyfile " + Quote(v.keyfile());
}

TEST(EnvelopectlMounted, RotateWhileMountedNewFilesUseTheNewVersion) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  const std::string old_content = RandomString(20000, 5);
  WriteFile(v / "old", old_content);
  ASSERT_EQ(0, RunCommand(MountedCtl(v, "keys rotate " + Quote(v.cipher()))).exit_code);
  // The daemon re-reads a changed keyring at most once a second: new files created after that
  // use version 2. Poll for up to 5 s rather than assume the period.
  auto version_of = [](const fs::path& cipher) {
    return json::parse(RunCommand(kCtl + " inspect --json " + Quote(cipher)).output)["kek_version"];
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string name;
  fs::path new_cipher;
  for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    name = "new" + std::to_string(i);
    WriteFile(v / name, "after rotation");
    new_cipher = CipherOf(v, v / name);
    ASSERT_FALSE(new_cipher.empty());
    if (version_of(new_cipher) == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(2, version_of(new_cipher)) << "no new file on version 2 within 5 s\n" << v.DaemonLog();
  EXPECT_EQ(1, version_of(CipherOf(v, v / "old")));
  EXPECT_EQ(old_content, ReadFile(v / "old"));
  EXPECT_EQ("after rotation", ReadFile(v / name));
  // Files the daemon created under version 1 after the rotation still read, and rewrap moves
  // them like any other.
  ASSERT_EQ(0, RunCommand(MountedCtl(v, "rewrap " + Quote(v.cipher()))).exit_code);
  EXPECT_EQ(2, version_of(CipherOf(v, v / "old")));
  EXPECT_EQ(old_content, ReadFile(v / "old"));
}

TEST(EnvelopectlMounted, RewrapWhileMountedAndBeingAppendedKeepsEverything) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 150; ++i) {
    std::string name = "f" + std::to_string(i);
    expected[name] = RandomString(static_cast<size_t>(i) * 97, static_cast<uint32_t>(i));
    WriteFile(v / name, expected[name]);
  }
  const std::vector<std::string> appended = {"log0", "log1", "log2", "log3"};
  for (const std::string& name : appended) WriteFile(v / name, "");

  // A writer keeps appending (open, write, close: every append reopens the file, so the daemon
  // must also open files whose headers rewrap has just moved to a new version).
  std::atomic<bool> stop{false};
  std::atomic<int> writer_errno{0};
  std::atomic<uint64_t> appends{0};
  std::map<std::string, std::string> written;
  std::thread writer([&] {
    std::mt19937 rng(99);
    while (!stop.load()) {
      const std::string& name = appended[rng() % appended.size()];
      std::string piece = RandomString(1 + rng() % 9000, static_cast<uint32_t>(rng()));
      int fd = open((v / name).c_str(), O_WRONLY | O_APPEND);
      if (fd < 0 || write(fd, piece.data(), piece.size()) != static_cast<ssize_t>(piece.size())) {
        writer_errno = errno;
        if (fd >= 0) close(fd);
        return;
      }
      close(fd);
      written[name] += piece;
      ++appends;
    }
  });
  // Two rotations, each followed by a rewrap (and a second, idle pass) under the writer.
  CommandResult rewrap;
  for (int pass = 0; pass < 4 && writer_errno == 0; ++pass) {
    if (pass % 2 == 0) {
      ASSERT_EQ(0, RunCommand(MountedCtl(v, "keys rotate " + Quote(v.cipher()))).exit_code);
    }
    rewrap = RunCommand(MountedCtl(v, "rewrap " + Quote(v.cipher()) + " --jobs 2"), 120);
    if (rewrap.exit_code != 0) break;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  writer.join();
  ASSERT_EQ(0, writer_errno.load()) << "an append failed: " << std::strerror(writer_errno) << "\n"
                                    << v.DaemonLog();
  ASSERT_EQ(0, rewrap.exit_code) << rewrap.output;
  EXPECT_GT(appends.load(), 10u);
  for (const std::string& name : appended) expected[name] = written[name];
  for (const auto& [name, content] : expected) {
    std::string got = ReadFile(v / name);
    ASSERT_TRUE(got == content) << name << ": " << got.size() << " bytes read, " << content.size()
                                << " expected\n"
                                << v.DaemonLog();
    fs::path cipher = CipherOf(v, v / name);
    EXPECT_TRUE(BothSlotsOn(cipher, 3)) << name;
  }
  v.Unmount();
  CommandResult verify = RunCommand(MountedCtl(v, "verify " + Quote(v.cipher())));
  EXPECT_EQ(0, verify.exit_code) << verify.output;
  fs::path out = v.cipher().parent_path() / "restored";
  ASSERT_EQ(
      0, RunCommand(MountedCtl(v, "decrypt " + Quote(v.cipher()) + " -o " + Quote(out))).exit_code);
  EXPECT_EQ(expected, TreeContents(out));
}

}  // namespace
}  // namespace envelopefs::testing
