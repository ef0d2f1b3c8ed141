// Unit tests of damage reporting: the DamageReporter a caller passes in receives the file and
// the chunk of a tampered chunk (at read time and when opening), a bad header, an unsealed
// file, and the damaged headers rewrap meets (and nothing for an I/O failure); the daemon's
// reporter (DamageAudit) writes one tamper_detected event per file and detail, through the one
// writer (AppendTamperEvent), with the field "file".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "damage_audit.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/cipher_header.h"
#include "envelopefs/error.h"
#include "envelopefs/file_format.h"
#include "envelopefs/rewrap.h"
#include "envelopefs/volume_config.h"
#include "recording_reporter.h"
#include "temp_volume.h"

namespace envelopefs::testing {
namespace {

// Flips one byte of `path` at `offset`.
void FlipByte(const std::filesystem::path& path, uint64_t offset) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  uint8_t b = 0;
  ASSERT_EQ(1, pread(fd.get(), &b, 1, static_cast<off_t>(offset)));
  b ^= 0x5a;
  ASSERT_EQ(1, pwrite(fd.get(), &b, 1, static_cast<off_t>(offset)));
}

// Where the ciphertext of chunk `index` of the cipher file `path` starts.
uint64_t ChunkCipherOffset(const std::filesystem::path& path, uint64_t index) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return ReadHeader(fd.get()).layout().ChunkOffset(index) + format::kChunkNonceSize;
}

// A sealed file of three full chunks (4 KiB each).
void MakeSealedFile(TempVolume& v, const std::string& name) {
  auto f = v.Create(name);
  ASSERT_EQ(3 * 4096, TempVolume::Write(*f, std::string(3 * 4096, 'x'), 0));
  ASSERT_EQ(0, f->Sync());
}

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

TEST(DamageReporter, AChunkTamperedWhileOpenIsReportedWithTheFileAndChunk) {
  TempVolume v;
  MakeSealedFile(v, "f");
  auto f = v.Open("f");
  ASSERT_TRUE(v.damage().damaged().empty());
  FlipByte(v.Path("f"), ChunkCipherOffset(v.Path("f"), 1) + 100);
  std::vector<uint8_t> out(3 * 4096);
  EXPECT_EQ(-EIO, f->Read(out, 0));
  const std::vector<Damage> got = v.damage().damaged();
  ASSERT_EQ(1u, got.size());
  EXPECT_TRUE(EndsWith(got[0].file, "/vol/f")) << got[0].file;
  ASSERT_TRUE(got[0].chunk.has_value());
  EXPECT_EQ(1u, *got[0].chunk);
  EXPECT_EQ(0u, got[0].detail.rfind("chunk 1: ", 0)) << got[0].detail;
  EXPECT_TRUE(EndsWith(got[0].detail, " (EIO)")) << got[0].detail;
  // The first chunk is intact and still reads.
  EXPECT_EQ(4096, f->Read(std::span<uint8_t>(out.data(), 4096), 0));
  EXPECT_EQ(1u, v.damage().damaged().size());
}

TEST(DamageReporter, AChunkTamperedWhileClosedIsReportedWhenOpenedWithTheChunk) {
  TempVolume v;
  MakeSealedFile(v, "f");
  // In its tag: the chunk is no longer the version the sealed chunk index records.
  FlipByte(v.Path("f"), ChunkCipherOffset(v.Path("f"), 2) + 4096 + 3);
  try {
    v.Open("f");
    ADD_FAILURE() << "a tampered sealed file opened";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kAuthentication, e.kind());
  }
  const std::vector<Damage> got = v.damage().damaged();
  ASSERT_EQ(1u, got.size());
  EXPECT_TRUE(EndsWith(got[0].file, "/vol/f")) << got[0].file;
  ASSERT_TRUE(got[0].chunk.has_value());
  EXPECT_EQ(2u, *got[0].chunk);
  EXPECT_EQ(0u, got[0].detail.rfind("chunk 2: ", 0)) << got[0].detail;
}

TEST(DamageReporter, ABadHeaderIsReportedWithTheFileAndNoChunk) {
  TempVolume v;
  MakeSealedFile(v, "f");
  for (size_t slot : format::kKeySlotOffset) FlipByte(v.Path("f"), slot + 40);
  EXPECT_THROW(v.Open("f"), Error);
  const std::vector<Damage> got = v.damage().damaged();
  ASSERT_EQ(1u, got.size());
  EXPECT_TRUE(EndsWith(got[0].file, "/vol/f")) << got[0].file;
  EXPECT_FALSE(got[0].chunk.has_value());
  EXPECT_FALSE(got[0].detail.empty());
  EXPECT_EQ(std::string::npos, got[0].detail.find("vol/f")) << "the detail names no file";
}

TEST(DamageReporter, AnUnsealedFileIsReportedAsSuchNotAsDamage) {
  TempVolume v;
  {
    auto f = v.Create("u");
    ASSERT_EQ(5, TempVolume::Write(*f, "hello", 0));  // closed without a seal: a crash
  }
  auto f = v.Open("u");
  EXPECT_FALSE(f->sealed());
  EXPECT_TRUE(v.damage().damaged().empty());
  const std::vector<std::string> unsealed = v.damage().unsealed();
  ASSERT_EQ(1u, unsealed.size());
  EXPECT_TRUE(EndsWith(unsealed[0], "/vol/u")) << unsealed[0];
}

TEST(DamageReporter, RewrapReportsDamagedHeadersButNotFilesItCannotOpen) {
  TempVolume v;
  MakeSealedFile(v, "good");
  MakeSealedFile(v, "bad");
  for (size_t slot : format::kKeySlotOffset) FlipByte(v.Path("bad"), slot + 40);
  v.volume().UpdateKeyring([](Keyring& k) { k.Rotate(std::time(nullptr)); });
  const std::vector<std::string> files = {"good", "bad", "missing"};
  std::string bad_why;
  RewrapStats stats = RewrapFiles(
      v.volume(), v.volume().ActiveKek(), files,
      [&](const std::string& file, RewrapOutcome outcome, const std::string& why) {
        if (file == "bad" && outcome == RewrapOutcome::kFailed) bad_why = why;
      },
      v.damage());
  EXPECT_EQ(1u, stats.rewrapped);
  EXPECT_EQ(2u, stats.failed);
  const std::vector<Damage> got = v.damage().damaged();
  ASSERT_EQ(1u, got.size()) << "only the damaged header, not the missing file";
  EXPECT_TRUE(EndsWith(got[0].file, "/vol/bad")) << got[0].file;
  EXPECT_FALSE(got[0].chunk.has_value());
  EXPECT_EQ(bad_why, got[0].detail);
}

// The tamper_detected lines of the volume's audit log.
std::vector<nlohmann::json> TamperEvents(TempVolume& v) {
  std::vector<nlohmann::json> events;
  std::ifstream in(v.Path(kAuditLogFileName));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["event"] == "tamper_detected") events.push_back(j);
  }
  return events;
}

TEST(DamageAudit, LogsEveryReportAndAuditsEachFileAndDetailOnceWithTheFieldFile) {
  TempVolume v;
  DamageAudit audit(v.volume());
  const Damage damage{"/cipher/a\nb", 3, "chunk 3: authentication failed (EIO)"};
  audit.Damaged(damage);
  audit.Damaged(damage);  // read again: no second event
  audit.Damaged({"/cipher/a\nb", std::nullopt, "another detail"});
  const std::vector<nlohmann::json> events = TamperEvents(v);
  ASSERT_EQ(2u, events.size());
  EXPECT_EQ("/cipher/a\\x0ab", events[0]["file"]) << "escaped: one line";
  EXPECT_EQ("chunk 3: authentication failed (EIO)", events[0]["detail"]);
  EXPECT_FALSE(events[0].contains("path"));
  EXPECT_FALSE(events[0].contains("found_by"));
  EXPECT_EQ("another detail", events[1]["detail"]);
}

TEST(DamageAudit, VerifyWritesTheSameEventThroughTheSameFunction) {
  TempVolume v;
  AppendTamperEvent(v.volume(), "/cipher/x", "chunk 0: authentication failed", "verify");
  const std::vector<nlohmann::json> events = TamperEvents(v);
  ASSERT_EQ(1u, events.size());
  EXPECT_EQ("/cipher/x", events[0]["file"]);
  EXPECT_EQ("chunk 0: authentication failed", events[0]["detail"]);
  EXPECT_EQ("verify", events[0]["found_by"]);
}

}  // namespace
}  // namespace envelopefs::testing
