// Attacks on a mounted volume by someone who can write the cipher dir but holds no key (issue 7),
// each performed for real: the safe outcome is asserted, never assumed.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "envelopefs/file_format.h"
#include "envelopefs/file_header.h"
#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

const std::string kCtl = ENVELOPECTL_BINARY;

// Format-2 byte positions (file_format.h) for the attacks below, which use 4 KiB chunks.
constexpr uint64_t kHeader = format::kHeaderSize;
constexpr uint64_t kStride = 4096 + format::kChunkOverhead;
constexpr uint64_t kChunk1 = kHeader + kStride;  // where chunk 1 starts
const uint64_t kStateSlot0 = StateSlotOffset(format::kFormatVersion2, 0);
const uint64_t kStateSlot1 = StateSlotOffset(format::kFormatVersion2, 1);

std::string Ctl(const MountedVolume& v, const std::string& args) {
  return kCtl + " " + args + " --keyfile " + Quote(v.keyfile());
}

int OpenErrno(const fs::path& p) {
  int fd = open(p.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  char buf[65536];
  int err = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) err = errno;
    if (n <= 0) break;
  }
  close(fd);
  return err;
}

// Finding 1: the audit log as a write-anywhere primitive.
TEST(Security, TheAuditLogNeverWritesThroughASymlink) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "$(touch pwned)", "data");
  v.Unmount();
  TempDir outside;
  const fs::path target = outside.path() / "bashrc";
  WriteFile(target, "original\n");
  fs::remove(v.cipher() / "envelopefs.audit.log");
  fs::create_symlink(target, v.cipher() / "envelopefs.audit.log");
  // A wrong-key attempt, a mount, a listing, a tampered read, envelopectl commands.
  TempDir other;
  WriteSecretFile(other.path() / "wrong", std::string(32, 'w'));
  RunCommand(kCtl + " keys list " + Quote(v.cipher()) + " --keyfile " +
             Quote(other.path() / "wrong"));
  v.Mount();
  ASSERT_MOUNTED(v);
  RunCommand("ls -la " + Quote(v.mnt()));
  v.Unmount();
  RunCommand(Ctl(v, "keys rotate " + Quote(v.cipher())));
  RunCommand(Ctl(v, "verify " + Quote(v.cipher())));
  EXPECT_EQ("original\n", ReadFile(target));
  // The audit report says the log is not a regular file.
  CommandResult audit = RunCommand(Ctl(v, "audit --json " + Quote(v.cipher())));
  EXPECT_NE(0, audit.exit_code);
  EXPECT_NE(std::string::npos, audit.output.find("not a regular file")) << audit.output;
}

// Finding 2: a zeroed state record plus a cut used to read back as a shorter, clean file.
TEST(Security, AZeroedStateRecordAndACutReadAsEio) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", RandomString(5 * 4096, 3));
  const fs::path cipher = CipherOf(v, v / "f");
  v.Unmount();
  std::vector<uint8_t> header = ReadBytes(cipher);
  header.resize(kHeader);
  uint64_t c0, c1;  // the state records' counters
  std::memcpy(&c0, header.data() + kStateSlot0, 8);
  std::memcpy(&c1, header.data() + kStateSlot1, 8);
  WriteBytesAt(cipher, c0 > c1 ? kStateSlot0 : kStateSlot1,
               std::vector<uint8_t>(kStateSlot1 - kStateSlot0, 0));
  fs::resize_file(cipher, kHeader + 3 * kStride);
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(EIO, OpenErrno(v / "f"));
  v.Unmount();
  EXPECT_NE(std::string::npos, v.DaemonLog().find(cipher.filename().string()));
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher())));
  EXPECT_EQ(5, verify.exit_code) << verify.output;
  // Cut to the header: not an empty file either.
  fs::resize_file(cipher, kHeader);
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(EIO, OpenErrno(v / "f"));
}

// Finding 5: one chunk rolled back to its older self (after an O_TRUNC rewrite, and after an
// in-place overwrite) used to read and verify clean.
TEST(Security, AChunkRolledBackToAnOlderVersionReadsAsEio) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  WriteFile(v / "trunc", std::string(3 * 4096, 'a'));
  WriteFile(v / "inplace", std::string(3 * 4096, 'a'));
  const fs::path ct = CipherOf(v, v / "trunc"), ci = CipherOf(v, v / "inplace");
  v.Unmount();
  std::vector<uint8_t> old_t = ReadBytes(ct), old_i = ReadBytes(ci);
  v.Mount();
  ASSERT_MOUNTED(v);
  WriteFile(v / "trunc", std::string(3 * 4096, 'b'));  // O_TRUNC: a fresh key
  int fd = open((v / "inplace").c_str(), O_WRONLY);
  ASSERT_EQ(4096, pwrite(fd, std::string(4096, 'b').data(), 4096, 4096));
  close(fd);
  v.Unmount();
  WriteBytesAt(ct, kChunk1,
               std::vector<uint8_t>(old_t.begin() + kChunk1, old_t.begin() + kChunk1 + kStride));
  WriteBytesAt(ci, kChunk1,
               std::vector<uint8_t>(old_i.begin() + kChunk1, old_i.begin() + kChunk1 + kStride));
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(EIO, OpenErrno(v / "trunc"));
  EXPECT_EQ(EIO, OpenErrno(v / "inplace"));
  v.Unmount();
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher())));
  EXPECT_EQ(5, verify.exit_code) << verify.output;
  EXPECT_NE(std::string::npos, verify.output.find("2 damaged")) << verify.output;
}

// Finding 3: restoring an old keyring brought a retired KEK back, and a running daemon reloaded
// it and wrapped new files under the old active version.
TEST(Security, AnOldKeyringIsRefusedByTheDaemonAndOnRemount) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const fs::path keyring = v.cipher() / "envelopefs.keyring";
  const std::vector<uint8_t> generation1 = ReadBytes(keyring);
  ASSERT_EQ(0, RunCommand(Ctl(v, "keys rotate " + Quote(v.cipher()))).exit_code);
  ASSERT_EQ(0, RunCommand(Ctl(v, "keys retire " + Quote(v.cipher()) + " --version 1")).exit_code);
  WriteFile(v / "before", "x");
  usleep(1200 * 1000);  // the daemon looks at the keyring at most once a second
  WriteFile(keyring, std::string(generation1.begin(), generation1.end()));
  usleep(1200 * 1000);
  WriteFile(v / "after", "y");  // must still be wrapped under version 2
  const fs::path after = CipherOf(v, v / "after");
  v.Unmount();
  nlohmann::json j =
      nlohmann::json::parse(RunCommand(kCtl + " inspect --json " + Quote(after)).output);
  EXPECT_EQ(2, j["kek_version"]);
  EXPECT_NE(std::string::npos, v.DaemonLog().find("rollback")) << v.DaemonLog();
  // A new mount, and every envelopectl command, refuse the old keyring on this host.
  CommandResult list = RunCommand(Ctl(v, "keys list " + Quote(v.cipher())));
  EXPECT_EQ(4, list.exit_code) << list.output;
  EXPECT_NE(std::string::npos, list.output.find("rollback")) << list.output;
  CommandResult mount =
      RunCommand(std::string(ENVELOPEFS_BINARY) + " --keyfile " + Quote(v.keyfile()) + " " +
                 Quote(v.cipher()) + " " + Quote(v.mnt()));
  EXPECT_EQ(4, mount.exit_code) << mount.output;
  EXPECT_FALSE(IsFuseMount(v.mnt()));
}

// Finding 8: no core dump holds a key.
TEST(Security, TheDaemonCannotDumpCore) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  std::string limits = ReadFile("/proc/" + std::to_string(v.pid()) + "/limits");
  size_t at = limits.find("Max core file size");
  ASSERT_NE(std::string::npos, at);
  std::string line = limits.substr(at, limits.find('\n', at) - at);
  EXPECT_NE(std::string::npos, line.find(" 0 ")) << line;
  // PR_SET_DUMPABLE 0 is asserted by the unit test of HardenProcess.
}

// Finding 10: a non-root mount with -o allow_other checked no permissions.
TEST(Security, ANonRootAllowOtherMountChecksPermissions) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to set up the users";
  struct stat fuse;
  ASSERT_EQ(0, stat("/dev/fuse", &fuse));
  ASSERT_TRUE((fuse.st_mode & 0006) == 0006 &&
              ReadFile("/etc/fuse.conf").find("\nuser_allow_other") != std::string::npos)
      << "scripts/install-deps makes /dev/fuse usable by users and allows user_allow_other, as "
         "Debian does by default";
  TempDir t;
  chmod(t.path().c_str(), 0755);
  const fs::path cipher = t.path() / "cipher", mnt = t.path() / "mnt", key = t.path() / "key";
  fs::create_directories(mnt);
  WriteSecretFile(key, std::string(32, 'n'));
  ASSERT_EQ(0, chown(key.c_str(), 65534, 65534));
  ASSERT_EQ(0, chown(mnt.c_str(), 65534, 65534));
  ASSERT_EQ(0, chown(t.path().c_str(), 65534, 65534));
  const std::string env = "env HOME=" + t.path().string() +
                          " ENVELOPEFS_STATE_DIR=" + (t.path() / "state").string() + " ";
  auto as = [&](uid_t uid, const std::string& cmd) {
    return RunCommand("setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(uid) +
                      " --clear-groups " + env + cmd);
  };
  CommandResult init = as(65534, kCtl + " init --keyfile " + Quote(key) + " " + Quote(cipher));
  ASSERT_EQ(0, init.exit_code) << init.output;
  CommandResult mount = as(65534, std::string(ENVELOPEFS_BINARY) + " --keyfile " + Quote(key) +
                                      " -o allow_other " + Quote(cipher) + " " + Quote(mnt));
  ASSERT_EQ(0, mount.exit_code) << mount.output;
  struct Unmount {
    fs::path m;
    ~Unmount() { RunCommand("fusermount3 -uz " + Quote(m)); }
  } unmount{mnt};
  EXPECT_EQ(0, as(65534, "chmod 755 " + Quote(mnt)).exit_code);
  EXPECT_EQ(0,
            as(65534, "sh -c 'umask 077; echo secret > " + Quote(mnt / "private") + "'").exit_code);
  // Another user: the kernel refuses, as on ext4 (the daemon, running as the owner, would not).
  CommandResult read = as(65533, "cat " + Quote(mnt / "private"));
  EXPECT_NE(0, read.exit_code);
  EXPECT_NE(std::string::npos, read.output.find("Permission denied")) << read.output;
}

// --- found by the attacker's review (red team) -------------------------------------------------

// A state-slot pair copied while a file was being rewritten (unsealed), put back after the file
// was sealed again, with an older chunk and a cut: the file opens (an interrupted write looks the
// same), but nothing vouches for it, and every report says so.
TEST(Security, AReplayedUnsealedStateIsReportedNotPassedAsClean) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", std::string(3 * 4096, 'X'));
  const fs::path cipher = CipherOf(v, v / "f");
  usleep(2500 * 1000);  // sealed
  const std::vector<uint8_t> sealed = ReadBytes(cipher);
  int fd = open((v / "f").c_str(), O_WRONLY);
  ASSERT_EQ(4096, pwrite(fd, std::string(4096, 'Y').data(), 4096, 4096));
  const std::vector<uint8_t> during = ReadBytes(cipher);  // the attacker's copy, mid-write
  close(fd);
  v.Unmount();
  WriteBytesAt(cipher, kChunk1,
               std::vector<uint8_t>(sealed.begin() + kChunk1, sealed.begin() + kChunk1 + kStride));
  WriteBytesAt(cipher, kStateSlot0,  // both state records, as they were mid-write
               std::vector<uint8_t>(during.begin() + kStateSlot0, during.begin() + kHeader));
  fs::resize_file(cipher, kHeader + 2 * kStride);
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher())));
  EXPECT_EQ(5, verify.exit_code) << verify.output;
  EXPECT_NE(std::string::npos, verify.output.find("UNSEALED")) << verify.output;
  CommandResult audit = RunCommand(Ctl(v, "audit " + Quote(v.cipher())));
  EXPECT_NE(0, audit.exit_code) << audit.output;
  EXPECT_NE(std::string::npos, audit.output.find("PROBLEMS")) << audit.output;
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(0, OpenErrno(v / "f"));
  v.Unmount();
  EXPECT_NE(std::string::npos, v.DaemonLog().find("unsealed: ")) << v.DaemonLog();
}

// After `keys change-master`, a mounted daemon can no longer read the keyring: it must not wrap
// new files under a KEK version that a later rotation and retirement destroy.
TEST(Security, AfterAChangeOfMasterKeyTheMountRefusesNewFilesNotLosesThem) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "before", "kept");
  TempDir t;
  WriteSecretFile(t.path() / "key2", std::string(32, '2'));
  ASSERT_EQ(0, RunCommand(Ctl(v, "keys change-master " + Quote(v.cipher()) + " --new-keyfile " +
                                     Quote(t.path() / "key2")))
                   .exit_code);
  usleep(1200 * 1000);
  int fd = open((v / "after").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  EXPECT_LT(fd, 0) << "a file was created under a KEK that may be retired next";
  EXPECT_EQ(EACCES, errno);
  if (fd >= 0) close(fd);
  EXPECT_EQ("kept", ReadFile(v / "before"));  // existing files stay readable
}

// One flipped byte (making a file look unencrypted) must not get a KEK still in use destroyed.
TEST(Security, RetireRefusesWhileAnyHeaderCannotBeRead) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  const fs::path cipher = CipherOf(v, v / "f");
  v.Unmount();
  ASSERT_EQ(0, RunCommand(Ctl(v, "keys rotate " + Quote(v.cipher()))).exit_code);
  WriteBytesAt(cipher, 0, {'X'});  // "ENVLPFS" -> "XNVLPFS": rewrap skips it
  RunCommand(Ctl(v, "rewrap " + Quote(v.cipher())));
  CommandResult retire = RunCommand(Ctl(v, "keys retire " + Quote(v.cipher()) + " --version 1"));
  EXPECT_EQ(8, retire.exit_code) << retire.output;
  WriteBytesAt(cipher, 0, {'E'});  // the attacker undoes it: the file must still open
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("data", ReadFile(v / "f"));
}

// A file cut to nothing: EIO, and the log names the cipher file.
TEST(Security, ADamagedHeaderIsReportedWithTheFileName) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  const fs::path cipher = CipherOf(v, v / "f");
  v.Unmount();
  fs::resize_file(cipher, 0);
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(EIO, OpenErrno(v / "f"));
  v.Unmount();
  EXPECT_NE(std::string::npos, v.DaemonLog().find("tamper: " + cipher.string())) << v.DaemonLog();
}

// A backing entry replaced by a hard link to a file outside the volume: chmod, chown and touch
// through the mount must not reach it.
TEST(Security, AHardLinkToAnOutsideFileTakesNoMetadataChange) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "report", "mine");
  const fs::path cipher = CipherOf(v, v / "report");
  v.Unmount();
  const fs::path outside = v.cipher().parent_path() / "outside.txt";  // same file system
  WriteFile(outside, "outside secret");
  chmod(outside.c_str(), 0600);
  struct stat before;
  ASSERT_EQ(0, stat(outside.c_str(), &before));
  fs::remove(cipher);
  fs::create_hard_link(outside, cipher);
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_NE(0, chmod((v / "report").c_str(), 0666));
  EXPECT_NE(0, chown((v / "report").c_str(), 12345, 12345));
  EXPECT_NE(0, utimensat(AT_FDCWD, (v / "report").c_str(), nullptr, 0));
  struct stat after;
  ASSERT_EQ(0, stat(outside.c_str(), &after));
  EXPECT_EQ(before.st_mode, after.st_mode);
  EXPECT_EQ(before.st_uid, after.st_uid);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
}

// The same with a forged envelopefs header (another volume's file: a KEK id this volume does
// not have). The refusal is ENOKEY, not EACCES: EACCES is what lets a daemon that is not root
// chmod a file it cannot open (mode 000), so a forged header must never produce it.
TEST(Security, AHardLinkWithAForeignHeaderTakesNoMetadataChange) {
  std::string foreign;  // the cipher file's bytes
  {
    MountedVolume other;
    ASSERT_MOUNTED(other);
    WriteFile(other / "x", "another volume's file");
    const fs::path x = CipherOf(other, other / "x");
    other.Unmount();
    foreign = ReadFile(x);
  }
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "report", "mine");
  const fs::path cipher = CipherOf(v, v / "report");
  v.Unmount();
  const fs::path outside = v.cipher().parent_path() / "outside.bin";  // same file system
  ASSERT_FALSE(foreign.empty());
  WriteFile(outside, foreign);
  chmod(outside.c_str(), 0600);
  fs::remove(cipher);
  fs::create_hard_link(outside, cipher);
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_NE(0, chmod((v / "report").c_str(), 0666));
  EXPECT_EQ(ENOKEY, errno);
  EXPECT_NE(0, utimensat(AT_FDCWD, (v / "report").c_str(), nullptr, 0));
  EXPECT_NE(0, setxattr((v / "report").c_str(), "user.k", "v", 1, 0));
  struct stat after;
  ASSERT_EQ(0, stat(outside.c_str(), &after));
  EXPECT_EQ(0600u, after.st_mode & 07777);
}

// Cipher names are the attacker's: reports escape them, so they cannot drive the terminal or
// forge a "result: OK" line.
TEST(Security, ReportsEscapeNamesFromTheCipherDir) {
  MountedVolume v(VolumeOptions{"--plaintext-names", ""});
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  v.Unmount();
  WriteFile(v.cipher() / "evil\x1b[2J\nresult: OK", "not an envelopefs file");
  CommandResult audit = RunCommand(Ctl(v, "audit " + Quote(v.cipher())));
  EXPECT_EQ(std::string::npos, audit.output.find('\x1b')) << audit.output;
  EXPECT_EQ(std::string::npos, audit.output.find("\nresult: OK")) << audit.output;
  EXPECT_NE(std::string::npos, audit.output.find("result: PROBLEMS")) << audit.output;
}

}  // namespace
}  // namespace envelopefs::testing
