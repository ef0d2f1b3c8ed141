// Tampering with the cipher dir must read as EIO, be logged with the file and chunk, and leave
// the daemon serving everything else. Never unauthenticated plaintext.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

constexpr uint64_t kHeader = 512;
constexpr uint64_t kChunk = 4096;
constexpr uint64_t kStride = kChunk + 28;
constexpr size_t kFileSize = 5 * kChunk;  // five full chunks

// Reads the whole file; returns errno of the first failing read, or 0.
int ReadAllErrno(const fs::path& p, std::string* out = nullptr) {
  int fd = open(p.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  std::string data;
  char buf[65536];
  int err = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (out) *out = data;
  return err;
}

struct Tampered {
  std::string a_content, b_content;
};

// Makes files a and b, unmounts, applies `tamper(cipher_a, cipher_b)`, mounts again and checks
// that a reads as EIO (with a log line naming the chunk) while b still reads correctly.
void ExpectTamperDetected(const std::function<void(const fs::path&, const fs::path&)>& tamper,
                          const std::string& expect_in_log) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  std::string a = RandomString(kFileSize, 1), b = RandomString(kFileSize, 2);
  WriteFile(v / "a", a);
  WriteFile(v / "b", b);
  fs::path ca = CipherOf(v, v / "a"), cb = CipherOf(v, v / "b");
  ASSERT_FALSE(ca.empty());
  ASSERT_FALSE(cb.empty());
  v.Unmount();
  ASSERT_EQ(512 + 5 * kStride, fs::file_size(ca));
  tamper(ca, cb);
  v.Mount();
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  std::string got;
  EXPECT_EQ(EIO, ReadAllErrno(v / "a", &got)) << "tampered file read without error";
  EXPECT_NE(a, got);
  std::string b_got;
  EXPECT_EQ(0, ReadAllErrno(v / "b", &b_got));
  EXPECT_EQ(b, b_got) << "the daemon must keep serving other files";
  v.Unmount();
  std::string log = v.DaemonLog();
  EXPECT_NE(std::string::npos, log.find("tamper")) << log;
  EXPECT_NE(std::string::npos, log.find(ca.string())) << "log must name the file: " << log;
  if (!expect_in_log.empty()) {
    EXPECT_NE(std::string::npos, log.find(expect_in_log)) << log;
  }
  // The audit log records the event with the cipher path, and nothing of the plaintext.
  std::string audit = ReadFile(v.cipher() / "envelopefs.audit.log");
  EXPECT_NE(std::string::npos, audit.find("\"tamper_detected\"")) << audit;
  EXPECT_NE(std::string::npos, audit.find(ca.filename().string())) << audit;
  EXPECT_EQ(std::string::npos, audit.find(a.substr(0, 16))) << audit;
}

std::vector<uint8_t> Slice(const fs::path& p, uint64_t off, uint64_t len) {
  std::vector<uint8_t> all = ReadBytes(p);
  return std::vector<uint8_t>(all.begin() + static_cast<long>(off),
                              all.begin() + static_cast<long>(off + len));
}

// The tamper_detected events of the volume's audit log.
std::vector<nlohmann::json> TamperEvents(const MountedVolume& v) {
  std::vector<nlohmann::json> events;
  std::istringstream in(ReadFile(v.cipher() / "envelopefs.audit.log"));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json event = nlohmann::json::parse(line);
    if (event["event"] == "tamper_detected") events.push_back(event);
  }
  return events;
}

// The daemon and verify record one damaged chunk as the same event (one writer): the cipher
// file in "file", the chunk in "detail"; verify adds found_by.
TEST(Tamper, TheDaemonAndVerifyRecordTheSameEvent) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  WriteFile(v / "a", RandomString(kFileSize, 3));
  const fs::path ca = CipherOf(v, v / "a");
  ASSERT_FALSE(ca.empty());
  v.Unmount();
  auto bytes = Slice(ca, kHeader + 3 * kStride + 10, 1);
  bytes[0] ^= 0x10;
  WriteBytesAt(ca, kHeader + 3 * kStride + 10, bytes);
  v.Mount();
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  EXPECT_EQ(EIO, ReadAllErrno(v / "a"));
  EXPECT_EQ(EIO, ReadAllErrno(v / "a"));  // read again: logged again, audited once
  v.Unmount();
  CommandResult verify = RunCommand(std::string(ENVELOPECTL_BINARY) + " verify " +
                                    Quote(v.cipher()) + " --keyfile " + Quote(v.keyfile()));
  EXPECT_EQ(5, verify.exit_code) << verify.output;
  const std::vector<nlohmann::json> events = TamperEvents(v);
  ASSERT_EQ(2u, events.size()) << ReadFile(v.cipher() / "envelopefs.audit.log");
  for (const nlohmann::json& e : events) {
    EXPECT_EQ(ca.filename().string(), fs::path(e["file"].get<std::string>()).filename().string())
        << e.dump();
    EXPECT_EQ(0u, e["detail"].get<std::string>().rfind("chunk 3: ", 0)) << e.dump();
    EXPECT_FALSE(e.contains("path")) << e.dump();
  }
  EXPECT_FALSE(events[0].contains("found_by")) << "the daemon's";
  EXPECT_EQ("verify", events[1].value("found_by", "")) << events[1].dump();
  EXPECT_EQ(events[0]["detail"], events[1]["detail"]);
}

TEST(Tamper, FlippedBitInAChunk) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path&) {
        auto bytes = Slice(a, kHeader + 2 * kStride + 100, 1);
        bytes[0] ^= 0x04;
        WriteBytesAt(a, kHeader + 2 * kStride + 100, bytes);
      },
      "chunk 2");
}

TEST(Tamper, TwoChunksSwapped) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path&) {
        auto c1 = Slice(a, kHeader + 1 * kStride, kStride);
        auto c2 = Slice(a, kHeader + 2 * kStride, kStride);
        WriteBytesAt(a, kHeader + 1 * kStride, c2);
        WriteBytesAt(a, kHeader + 2 * kStride, c1);
      },
      "chunk 1");
}

TEST(Tamper, ChunkCopiedFromAnotherFile) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path& b) {
        WriteBytesAt(a, kHeader + 3 * kStride, Slice(b, kHeader + 3 * kStride, kStride));
      },
      "chunk 3");
}

TEST(Tamper, HeaderCopiedFromAnotherFile) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path& b) { WriteBytesAt(a, 0, Slice(b, 0, kHeader)); },
      "chunk 0");
}

TEST(Tamper, ChunkOverwrittenWithZeros) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path&) {
        WriteBytesAt(a, kHeader + 4 * kStride, std::vector<uint8_t>(kStride, 0));
      },
      "chunk 4");
}

TEST(Tamper, FileCutAtAChunkBoundary) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path&) { fs::resize_file(a, kHeader + 3 * kStride); },
      "sealed size");
}

TEST(Tamper, FileExtendedByAnExtraChunk) {
  ExpectTamperDetected(
      [](const fs::path& a, const fs::path&) {
        WriteBytesAt(a, kHeader + 5 * kStride, Slice(a, kHeader + 4 * kStride, kStride));
      },
      "sealed size");
}

TEST(Tamper, ZeroChunkInASparseFileIsAHoleOnlyThere) {
  // The documented limit: in a file with holes, an all-zero chunk reads as a hole (zeros).
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_TRUE(v.mounted());
  int fd = open((v / "s").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_EQ(1, pwrite(fd, "z", 1, 10 * kChunk));
  close(fd);
  std::string got;
  EXPECT_EQ(0, ReadAllErrno(v / "s", &got));
  EXPECT_EQ(std::string(10 * kChunk, '\0') + "z", got);
}

}  // namespace
}  // namespace envelopefs::testing
