// Unit tests of the audit log: the hash chain and MACs find lines edited, removed, reordered,
// forged or cut from the end; nothing in the cipher dir can make the log write elsewhere.
#include "envelopefs/audit_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/scoped_env.h"
#include "common/temp_dir.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = root_ / "key";
    std::ofstream(key_, std::ios::binary) << std::string(32, 'k');
    fs::permissions(key_, fs::perms::owner_read | fs::perms::owner_write);
    dir_ = root_ / "cipher";
    volume_ = Volume::Create(dir_, {}, *MakeKeyFileSource(key_));
  }

  fs::path Log() const { return dir_ / kAuditLogFileName; }
  std::vector<std::string> Lines() const {
    std::ifstream in(Log());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  void WriteLines(const std::vector<std::string>& lines) const {
    std::ofstream out(Log(), std::ios::trunc);
    for (const std::string& l : lines) out << l << "\n";
  }
  AuditLogReport Verify(bool with_key = true) const {
    return VerifyAuditLog(volume_->root_fd(), volume_->config(),
                          with_key ? &volume_->audit_key() : nullptr);
  }
  void AppendSome(int n) {
    for (int i = 0; i < n; ++i) AppendAuditEvent(*volume_, "kek_rotated", {{"kek_version", i + 2}});
  }
  static std::string Problems(const AuditLogReport& r) {
    std::string all;
    for (const std::string& p : r.problems) all += p + "\n";
    return all;
  }

  testing::TempDir tmp_{"envelopefs-audit"};
  const fs::path root_ = tmp_.path();
  testing::ScopedEnv state_dir_{"ENVELOPEFS_STATE_DIR", (root_ / "state").string()};
  fs::path dir_, key_;
  std::unique_ptr<Volume> volume_;
};

TEST_F(AuditLogTest, AnIntactLogVerifies) {
  AppendSome(5);
  AuditLogReport r = Verify();
  EXPECT_TRUE(r.problems.empty()) << Problems(r);
  EXPECT_EQ(5u, r.lines);
  EXPECT_EQ(5u, r.authenticated);
  EXPECT_EQ(5u, r.last_sequence);
  std::vector<std::string> lines = Lines();
  EXPECT_NE(std::string::npos, lines[0].find("\"seq\":1"));
  EXPECT_NE(std::string::npos, lines[0].find("\"user\":"));
  EXPECT_NE(std::string::npos, lines[0].find("\"host\":"));
  // Without the key the chain is still checked, the MACs are not.
  AuditLogReport keyless = Verify(false);
  EXPECT_TRUE(keyless.problems.empty()) << Problems(keyless);
  EXPECT_EQ(0u, keyless.authenticated);
}

TEST_F(AuditLogTest, AnEditedLineIsFound) {
  AppendSome(4);
  std::vector<std::string> lines = Lines();
  size_t at = lines[1].find("\"kek_version\":3");
  ASSERT_NE(std::string::npos, at);
  lines[1].replace(at, 15, "\"kek_version\":9");
  WriteLines(lines);
  std::string problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("line 2: does not authenticate")) << problems;
  // Even without the key: line 3 no longer follows line 2.
  EXPECT_NE(std::string::npos, Problems(Verify(false)).find("line 3: does not follow"));
}

TEST_F(AuditLogTest, ARemovedOrReorderedLineIsFound) {
  AppendSome(5);
  std::vector<std::string> lines = Lines();
  std::vector<std::string> removed = lines;
  removed.erase(removed.begin() + 2);
  WriteLines(removed);
  std::string problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("1 lines missing")) << problems;
  std::vector<std::string> swapped = lines;
  std::swap(swapped[1], swapped[3]);
  WriteLines(swapped);
  EXPECT_FALSE(Verify().problems.empty());
}

TEST_F(AuditLogTest, LinesCutFromTheEndAreFoundByThisHost) {
  AppendSome(5);
  std::vector<std::string> lines = Lines();
  lines.resize(3);
  WriteLines(lines);
  std::string problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("removed from its end")) << problems;
  fs::remove(Log());
  EXPECT_NE(std::string::npos, Problems(Verify()).find("missing")) << Problems(Verify());
}

TEST_F(AuditLogTest, AForgedLineWithoutAMacIsFound) {
  AppendSome(2);
  std::vector<std::string> lines = Lines();
  // A well-formed, chained line claiming a key event, but without the key for its MAC.
  std::string last = lines.back();
  std::string forged = "{\"event\":\"kek_rotated\",\"prev\":\"" +
                       ToHex(Sha256(AsBytes(last + "\n"))) + "\",\"seq\":3}";
  lines.push_back(forged);
  WriteLines(lines);
  EXPECT_NE(std::string::npos, Problems(Verify()).find("line 3: a \"kek_rotated\" line without"));
}

// Found by fuzz_audit_log: a "prev" or "event" of another type than a string made the reader
// throw out of VerifyAuditLog (envelopectl audit died with std::terminate). Now such a line is
// a problem like any other edit.
TEST_F(AuditLogTest, FieldsOfTheWrongTypeAreProblemsNotACrash) {
  AppendSome(2);
  std::vector<std::string> lines = Lines();
  const std::string prev = ToHex(Sha256(AsBytes(lines.back() + "\n")));
  lines.push_back("{\"event\":5,\"prev\":\"" + prev + "\",\"seq\":3}");
  lines.push_back("{\"event\":\"kek_rotated\",\"prev\":[1],\"seq\":4}");
  lines.push_back("{\"event\":null,\"prev\":{},\"seq\":\"5\",\"mac\":7}");
  WriteLines(lines);
  for (bool with_key : {true, false}) {
    AuditLogReport r;
    ASSERT_NO_THROW(r = Verify(with_key));
    const std::string problems = Problems(r);
    EXPECT_NE(std::string::npos, problems.find("line 3: a \"?\" line without a MAC")) << problems;
    EXPECT_NE(std::string::npos, problems.find("line 4: does not follow")) << problems;
    EXPECT_NE(std::string::npos, problems.find("line 5: does not follow")) << problems;
  }
}

// A log moved aside (or emptied, or ended with garbage) made the writer start again at
// sequence 1, and this host's record then matched the old log once it was put back. Now the
// writer numbers on after this host's last line, and a log must start at sequence 1.
TEST_F(AuditLogTest, ALogMovedAsideCannotBePutBackUnnoticed) {
  AppendSome(3);
  fs::rename(Log(), root_ / "saved");
  AppendSome(2);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(2u, lines.size());
  EXPECT_NE(std::string::npos, lines[0].find("\"seq\":4")) << lines[0];
  std::string problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("line 1: 3 lines missing before it")) << problems;
  fs::rename(root_ / "saved", Log());
  problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("removed from its end")) << problems;
  // Garbage at the end does not restart the numbers either.
  std::ofstream(Log(), std::ios::app) << "garbage\n";
  AppendSome(1);
  EXPECT_NE(std::string::npos, Lines().back().find("\"seq\":6")) << Lines().back();
  // Nor does a first line numbered 0 (or not numbered) pass for the start of the log.
  for (const std::string seq : {"0", "-1", "\"1\""}) {
    WriteLines({"{\"event\":\"unlock_failed\",\"prev\":\"" + ToHex(Sha256({})) +
                "\",\"seq\":" + seq + "}"});
    AppendSome(1);
    problems = Problems(Verify());
    EXPECT_NE(std::string::npos, problems.find("line 1: no valid sequence number")) << problems;
  }
}

// A line far longer than any the writer makes is a problem without being parsed: a deeply
// nested one would take many times its size in memory to parse.
TEST_F(AuditLogTest, AHugeLineIsReportedWithoutBeingParsed) {
  AppendSome(1);
  std::ofstream(Log(), std::ios::app) << std::string(1 << 20, '[') << "\n";
  AppendSome(1);
  AuditLogReport r = Verify();
  const std::string problems = Problems(r);
  EXPECT_NE(std::string::npos, problems.find("line 2: longer than any audit line")) << problems;
  // (Line 3 does not follow it: the writer reads only the log's last 64 KiB to chain on.)
  EXPECT_EQ(3u, r.lines);
}

// Whoever can open the log can flock it: a writer waits 5 s, then leaves the event to syslog
// instead of blocking (the daemon appends tamper events from its read path).
TEST_F(AuditLogTest, ALockHeldOnTheLogDelaysAWriterButNeverBlocksIt) {
  AppendSome(1);
  UniqueFd squatter(::open(Log().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(0, ::flock(squatter.get(), LOCK_EX));
  AppendSome(1);
  EXPECT_EQ(1u, Lines().size());
  squatter.reset();
  AppendSome(1);
  EXPECT_EQ(2u, Lines().size());
  EXPECT_TRUE(Verify().problems.empty()) << Problems(Verify());
}

TEST_F(AuditLogTest, AFailedUnlockIsChainedWithoutAMac) {
  AppendSome(1);
  fs::path wrong = root_ / "wrong";
  std::ofstream(wrong, std::ios::binary) << std::string(32, 'w');
  fs::permissions(wrong, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_THROW(OpenVolumeAudited(dir_, *MakeKeyFileSource(wrong)), Error);
  AppendSome(1);
  AuditLogReport r = Verify();
  EXPECT_TRUE(r.problems.empty()) << Problems(r);
  EXPECT_EQ(3u, r.lines);
  EXPECT_EQ(1u, r.unauthenticated);
  EXPECT_NE(std::string::npos, Lines()[1].find("unlock_failed"));
}

TEST_F(AuditLogTest, ASymlinkOrLinkInPlaceOfTheLogIsNeverWrittenThrough) {
  // Finding 1: the log was opened without O_NOFOLLOW, so a symlink made envelopefs append
  // attacker-chosen text to any file root can write.
  fs::path outside = root_ / "bashrc";
  std::ofstream(outside) << "original\n";
  fs::create_symlink(outside, Log());
  AppendSome(1);
  fs::path wrong = root_ / "wrong";
  std::ofstream(wrong, std::ios::binary) << std::string(32, 'w');
  fs::permissions(wrong, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_THROW(OpenVolumeAudited(dir_, *MakeKeyFileSource(wrong)), Error);
  std::ifstream in(outside);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ("original\n", got.str());
  // A hard link to an outside file, and a FIFO (which must not hang the writer).
  fs::remove(Log());
  fs::create_hard_link(outside, Log());
  AppendSome(1);
  std::ifstream again(outside);
  std::stringstream got2;
  got2 << again.rdbuf();
  EXPECT_EQ("original\n", got2.str());
  fs::remove(Log());
  ASSERT_EQ(0, mkfifo(Log().c_str(), 0600));
  AppendSome(1);
  EXPECT_FALSE(Verify().problems.empty());
}

TEST_F(AuditLogTest, AFormatOneConfigCannotPointTheLogElsewhere) {
  fs::path v1 = root_ / "v1";
  fs::copy(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume", v1,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  fs::path key = root_ / "v1.key";
  fs::copy_file(fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v1/volume.key", key);
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
  fs::path outside = root_ / "profile";
  std::ifstream in(v1 / kConfigFileName);
  std::stringstream config;
  config << in.rdbuf();
  std::string text = config.str();
  text.replace(text.find("'envelopefs.audit.log'"), 22, "'" + outside.string() + "'");
  std::ofstream(v1 / kConfigFileName, std::ios::trunc) << text;
  auto volume = OpenVolumeAudited(v1, *MakeKeyFileSource(key));
  AppendAuditEvent(*volume, "kek_rotated");
  EXPECT_FALSE(fs::exists(outside));
  EXPECT_TRUE(fs::exists(v1 / kAuditLogFileName));
}

TEST_F(AuditLogTest, TheLogCanBeTurnedOffOnlyWithTheKey) {
  volume_->UpdateKeyring([](Keyring& k) { k.set_policy(VolumePolicy{90, false}); });
  AppendSome(1);
  EXPECT_FALSE(fs::exists(Log()));
}

TEST_F(AuditLogTest, AuthenticatedLinesReplacedByForgedKeylessOnesAreFound) {
  // The attacker removes the last authenticated lines and appends failed-unlock lines (which
  // carry no MAC) with the same sequence numbers and correct hashes.
  AppendSome(4);
  std::vector<std::string> lines = Lines();
  lines.resize(2);
  for (int seq : {3, 4}) {
    lines.push_back("{\"event\":\"unlock_failed\",\"prev\":\"" +
                    ToHex(Sha256(AsBytes(lines.back() + "\n"))) +
                    "\",\"seq\":" + std::to_string(seq) + "}");
  }
  WriteLines(lines);
  std::string problems = Problems(Verify());
  EXPECT_NE(std::string::npos, problems.find("not the line this host wrote")) << problems;
}

TEST_F(AuditLogTest, AHugeLogIsOneProblemNotAFailedReport) {
  AppendSome(1);
  fs::resize_file(Log(), uint64_t{2} << 30);  // sparse: costs the attacker nothing
  AuditLogReport r = Verify();
  ASSERT_EQ(1u, r.problems.size());
  EXPECT_NE(std::string::npos, r.problems[0].find("too large")) << r.problems[0];
}

TEST_F(AuditLogTest, ADevicePlantedAsTheLogIsNeverOpened) {
  if (geteuid() != 0) GTEST_SKIP() << "mknod of a device needs root";
  ASSERT_EQ(0, mknod(Log().c_str(), S_IFCHR | 0600, makedev(1, 3)));  // /dev/null's numbers
  AppendSome(1);  // must not open (or write to) the device
  EXPECT_FALSE(Verify().problems.empty());
}

}  // namespace
}  // namespace envelopefs
