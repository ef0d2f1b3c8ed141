// Tests of envelopectl verify on real volumes: a clean volume passes, and each kind of tampering
// with the cipher dir is detected and names the file.
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
    {"OneStateRecordDamaged",
     [](OfflineVolume&, const fs::path& a, const fs::path&) {
       // What a torn write of a state record leaves: the file still reads (from the other
       // record), but verify reports it.
       const std::vector<uint8_t> bytes = ReadBytes(a);
       WriteBytesAt(a, format::kStateRegionOffset + 30,
                    {static_cast<uint8_t>(bytes[format::kStateRegionOffset + 30] ^ 0x55)});
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

}  // namespace
}  // namespace envelopefs::testing
