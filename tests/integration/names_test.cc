// Names are bytes, and symlink targets and xattr values resist an attacker who writes the cipher
// dir (issue 7, findings 9 and 11), on real mounts and with envelopectl:
// - file and directory names that are not UTF-8 work everywhere (ls -la, read, write, rename,
//   remove, envelopectl verify / verify --json / ls --json), and a foreign name of that kind
//   planted in the cipher dir is hidden and reported, never an EIO for the whole listing;
// - an xattr value copied (backing setxattr, as an attacker would) from one file or directory to
//   another reads as EIO with a tamper line naming the file, and verify reports it (format 2);
//   rename, hard links and truncation to zero keep a file's xattrs;
// - the daemon never reaches a symlink's target through xattr operations;
// - format-2 symlink targets are randomized (equal targets look different in the cipher dir).
// Expectations that differ by volume format read the version from envelopefs.toml, so these
// tests cover format 2 on a mount as soon as `envelopectl init` writes it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "envelopefs/long_symlink.h"
#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

const std::string kBadFile = "\xff\xfe-data.csv";  // not UTF-8
const std::string kBadDir =
    "\xc3\x28"
    "dir";                                     // an invalid two-byte sequence
const std::string kBadInner = "\x80\x81.bin";  // lone continuation bytes
const std::string kBadLink = "\xfe-link";
const std::string kBadRenamed = "\xfe\xff-renamed.csv";

// The volume format version from envelopefs.toml.
uint32_t FormatVersion(const fs::path& cipher) {
  const std::string config = ReadFile(cipher / "envelopefs.toml");
  const std::string key = "format_version";
  size_t at = config.find(key);
  if (at == std::string::npos) return 0;
  at = config.find_first_of("0123456789", at + key.size());
  return at == std::string::npos ? 0 : static_cast<uint32_t>(std::stoul(config.substr(at)));
}

std::string Ctl(const MountedVolume& v, const std::string& args) {
  return std::string(ENVELOPECTL_BINARY) + " " + args + " --keyfile " + Quote(v.keyfile());
}

// The cipher object (of any type) behind plaintext path `plain`, found by inode number.
fs::path CipherObjectOf(const MountedVolume& v, const fs::path& plain) {
  struct stat st;
  if (lstat(plain.c_str(), &st) != 0) return {};
  if (plain == v.mnt()) return v.cipher();
  for (auto it = fs::recursive_directory_iterator(v.cipher());
       it != fs::recursive_directory_iterator(); ++it) {
    struct stat cs;
    if (lstat(it->path().c_str(), &cs) == 0 && cs.st_ino == st.st_ino) return it->path();
  }
  return {};
}

// The attacker's move: every backing user.* attribute of `from` copied onto `to`.
void CopyBackingXattrs(const fs::path& from, const fs::path& to) {
  auto attrs = UserXattrs(from);
  ASSERT_FALSE(attrs.empty()) << from;
  for (const auto& [name, value] : attrs) {
    ASSERT_EQ(0, lsetxattr(to.c_str(), name.c_str(), value.data(), value.size(), 0))
        << to << ": " << std::strerror(errno);
  }
}

// getxattr through the mount: the value, or "errno:N".
std::string GetXattr(const fs::path& p, const std::string& name) {
  char buf[4096];
  ssize_t n = getxattr(p.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) return "errno:" + std::to_string(errno);
  return std::string(buf, static_cast<size_t>(n));
}

void SetXattr(const fs::path& p, const std::string& name, const std::string& value) {
  ASSERT_EQ(0, setxattr(p.c_str(), name.c_str(), value.data(), value.size(), 0))
      << p << ": " << std::strerror(errno);
}

const std::string kEio = "errno:" + std::to_string(EIO);

// Parses envelopectl's JSON output (which must be valid JSON whatever the names).
nlohmann::json ParseJson(const CommandResult& r) {
  try {
    return nlohmann::json::parse(r.output);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON (" << e.what() << "): " << r.output;
    return nullptr;
  }
}

// The "damaged" entries of verify --json whose cipher path ends in `suffix`.
std::vector<nlohmann::json> DamagedEndingIn(const nlohmann::json& j, const std::string& suffix) {
  std::vector<nlohmann::json> out;
  if (!j.is_object() || !j["damaged"].is_array()) return out;
  for (const auto& d : j["damaged"]) {
    std::string path = d["cipher_path"].get<std::string>();
    if (path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix) {
      out.push_back(d);
    }
  }
  return out;
}

// --- names that are not UTF-8 ----------------------------------------------------------------

void ExerciseNonUtf8Names(const std::string& init_flags) {
  SCOPED_TRACE(init_flags.empty() ? "encrypted names" : init_flags);
  MountedVolume v(VolumeOptions{init_flags, ""});
  ASSERT_MOUNTED(v);
  WriteFile(v / kBadFile, "a,b\n1,2\n");
  fs::create_directory(v / kBadDir);
  WriteFile(v / kBadDir / kBadInner, "inner");
  fs::create_symlink(kBadFile, v / kBadLink);
  WriteFile(v / "plain.txt", "ascii");

  CommandResult ls = RunCommand("ls -laR --quoting-style=literal " + Quote(v.mnt().string()));
  ASSERT_EQ(0, ls.exit_code) << ls.output;
  for (const std::string& name : {kBadFile, kBadDir, kBadInner, kBadLink}) {
    EXPECT_NE(std::string::npos, ls.output.find(name)) << ls.output;
  }
  EXPECT_EQ("a,b\n1,2\n", ReadFile(v / kBadFile));
  EXPECT_EQ("inner", ReadFile(v / kBadDir / kBadInner));
  EXPECT_EQ(kBadFile, fs::read_symlink(v / kBadLink).string());
  EXPECT_EQ("a,b\n1,2\n", ReadFile(v / kBadLink));  // followed through the mount
  WriteFile(v / kBadFile, "rewritten");
  fs::rename(v / kBadFile, v / kBadDir / kBadRenamed);
  EXPECT_FALSE(fs::exists(v / kBadFile));
  EXPECT_EQ("rewritten", ReadFile(v / kBadDir / kBadRenamed));
  fs::rename(v / kBadDir / kBadRenamed, v / kBadFile);

  v.Unmount();
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(0, verify.exit_code) << verify.output;
  CommandResult verify_json = RunCommand(Ctl(v, "verify --json " + Quote(v.cipher().string())));
  EXPECT_EQ(0, verify_json.exit_code) << verify_json.output;
  nlohmann::json vj = ParseJson(verify_json);
  EXPECT_EQ(true, vj["ok"]) << verify_json.output;
  EXPECT_EQ(5, vj["entries"]) << verify_json.output;
  CommandResult ls_json = RunCommand(Ctl(v, "ls --json " + Quote(v.cipher().string())));
  EXPECT_EQ(0, ls_json.exit_code) << ls_json.output;
  nlohmann::json lj = ParseJson(ls_json);
  ASSERT_TRUE(lj.is_array()) << ls_json.output;
  EXPECT_EQ(5u, lj.size());
  std::set<std::string> paths;
  for (const auto& e : lj) paths.insert(e["path"].get<std::string>());
  // Invalid bytes are replaced by U+FFFD in JSON (no exception, no lost entry).
  EXPECT_TRUE(paths.count("\xef\xbf\xbd\xef\xbf\xbd-data.csv")) << ls_json.output;
  EXPECT_TRUE(paths.count("plain.txt")) << ls_json.output;
  CommandResult ls_text = RunCommand(Ctl(v, "ls " + Quote(v.cipher().string())));
  EXPECT_EQ(0, ls_text.exit_code) << ls_text.output;
  EXPECT_NE(std::string::npos, ls_text.output.find(kBadDir + "/" + kBadInner)) << ls_text.output;

  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("rewritten", ReadFile(v / kBadFile));
  fs::remove(v / kBadLink);
  fs::remove(v / kBadFile);
  fs::remove(v / kBadDir / kBadInner);
  fs::remove(v / kBadDir);
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(v.mnt())) left.insert(e.path().filename());
  EXPECT_EQ(std::set<std::string>{"plain.txt"}, left);
}

TEST(Names, NonUtf8NamesWorkOnAMountAndInEnvelopectl) { ExerciseNonUtf8Names(""); }

TEST(Names, NonUtf8NamesWorkWithPlaintextNames) { ExerciseNonUtf8Names("--plaintext-names"); }

// The reported failure: one foreign name that is not UTF-8 in the cipher dir made the whole
// listing fail with EIO (its tamper report did not encode as JSON) and aborted verify.
TEST(Names, AForeignNonUtf8NameIsHiddenAndReportedNotAnError) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_directory(v / "sub");
  WriteFile(v / "sub" / "kept.txt", "kept");
  WriteFile(v / "top.txt", "top");
  fs::path sub = CipherObjectOf(v, v / "sub");
  ASSERT_FALSE(sub.empty());
  v.Unmount();
  const std::string junk = "\xff\xfe-junk\ntamper: forged line";
  WriteFile(v.cipher() / junk, "planted");
  WriteFile(sub / junk, "planted");

  v.Mount();
  ASSERT_MOUNTED(v);
  CommandResult ls = RunCommand("ls -laR " + Quote(v.mnt().string()));
  EXPECT_EQ(0, ls.exit_code) << ls.output;
  EXPECT_NE(std::string::npos, ls.output.find("top.txt")) << ls.output;
  EXPECT_NE(std::string::npos, ls.output.find("kept.txt")) << ls.output;
  EXPECT_EQ(std::string::npos, ls.output.find("junk")) << ls.output;
  EXPECT_EQ("kept", ReadFile(v / "sub" / "kept.txt"));
  v.Unmount();
  // Reported with the name escaped: no raw line break can forge a log line.
  std::string log = v.DaemonLog();
  EXPECT_NE(std::string::npos, log.find("\\xff\\xfe-junk\\x0atamper: forged line")) << log;
  EXPECT_EQ(std::string::npos, log.find("-junk\ntamper")) << log;

  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(5, verify.exit_code) << verify.output;  // damaged, not a crash (6)
  EXPECT_NE(std::string::npos, verify.output.find("\\xff\\xfe-junk")) << verify.output;
  CommandResult verify_json = RunCommand(Ctl(v, "verify --json " + Quote(v.cipher().string())));
  EXPECT_EQ(5, verify_json.exit_code) << verify_json.output;
  nlohmann::json j = ParseJson(verify_json);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(2u, j["damaged"].size()) << verify_json.output;
  for (const auto& d : j["damaged"]) {
    EXPECT_TRUE(d["path"].is_null()) << d.dump();
    EXPECT_NE(std::string::npos, d["reason"].get<std::string>().find("name")) << d.dump();
  }
  CommandResult ls_json = RunCommand(Ctl(v, "ls --json " + Quote(v.cipher().string())));
  EXPECT_EQ(5, ls_json.exit_code) << ls_json.output;
  CommandResult audit = RunCommand(Ctl(v, "audit --json " + Quote(v.cipher().string())));
  EXPECT_NE(6, audit.exit_code) << audit.output;
  // verify's audit line names the planted file, escaped.
  std::string audit_log = ReadFile(v.cipher() / "envelopefs.audit.log");
  EXPECT_NE(std::string::npos, audit_log.find("\\\\xff\\\\xfe-junk\\\\x0a")) << audit_log;
}

// --- extended attributes ---------------------------------------------------------------------

TEST(Xattrs, ValueCopiedToAnotherFileOrDirectoryReadsAsEio) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  const bool bound = FormatVersion(v.cipher()) >= 2;
  WriteFile(v / "a", "file a");
  WriteFile(v / "b", "file b");
  fs::create_directory(v / "d1");
  fs::create_directory(v / "d2");
  for (const char* p : {"a", "b", "d1", "d2"}) SetXattr(v / p, "user.tag", std::string("v-") + p);
  SetXattr(v.mnt(), "user.tag", "v-root");
  fs::path ca = CipherObjectOf(v, v / "a"), cb = CipherObjectOf(v, v / "b");
  fs::path d1 = CipherObjectOf(v, v / "d1"), d2 = CipherObjectOf(v, v / "d2");
  ASSERT_FALSE(ca.empty() || cb.empty() || d1.empty() || d2.empty());
  v.Unmount();
  CopyBackingXattrs(ca, cb);
  CopyBackingXattrs(d1, d2);
  CopyBackingXattrs(d1, v.cipher());

  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("v-a", GetXattr(v / "a", "user.tag"));
  EXPECT_EQ("v-d1", GetXattr(v / "d1", "user.tag"));
  if (bound) {
    EXPECT_EQ(kEio, GetXattr(v / "b", "user.tag"));
    EXPECT_EQ(kEio, GetXattr(v / "d2", "user.tag"));
    EXPECT_EQ(kEio, GetXattr(v.mnt(), "user.tag"));
  } else {  // format 1 binds values to their name only (envelopefs-format(5))
    EXPECT_EQ("v-a", GetXattr(v / "b", "user.tag"));
    EXPECT_EQ("v-d1", GetXattr(v / "d2", "user.tag"));
  }
  EXPECT_EQ("file b", ReadFile(v / "b"));  // the content is not affected
  v.Unmount();
  CommandResult verify = RunCommand(Ctl(v, "verify --json " + Quote(v.cipher().string())));
  nlohmann::json j = ParseJson(verify);
  if (bound) {
    std::string log = v.DaemonLog();
    for (const fs::path& p : {cb, d2}) {
      EXPECT_NE(std::string::npos, log.find("tamper: " + p.string() + ": extended attribute"))
          << log;
    }
    EXPECT_EQ(5, verify.exit_code) << verify.output;
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(3u, j["damaged"].size()) << verify.output;  // b, d2 and the root
    auto b = DamagedEndingIn(j, cb.filename().string());
    ASSERT_EQ(1u, b.size()) << verify.output;
    EXPECT_EQ("b", b[0]["path"]);
    EXPECT_NE(std::string::npos,
              b[0]["reason"].get<std::string>().find("value does not authenticate"));
    EXPECT_EQ(1u, DamagedEndingIn(j, d2.filename().string()).size()) << verify.output;
    EXPECT_EQ(1u, DamagedEndingIn(j, v.cipher().filename().string()).size()) << verify.output;
    EXPECT_TRUE(DamagedEndingIn(j, ca.filename().string()).empty()) << verify.output;
  } else {
    EXPECT_EQ(0, verify.exit_code) << verify.output;
  }
}

TEST(Xattrs, VerifyAuthenticatesEveryValue) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "content");
  fs::create_directory(v / "d");
  SetXattr(v / "f", "user.one", "1");
  SetXattr(v / "f", "user.two", "2");
  SetXattr(v / "d", "user.one", "1");
  fs::path cf = CipherObjectOf(v, v / "f"), cd = CipherObjectOf(v, v / "d");
  v.Unmount();
  CommandResult clean = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(0, clean.exit_code) << clean.output;
  // Another program's user.* attribute is not ours: not damage.
  ASSERT_EQ(0, lsetxattr(cf.c_str(), "user.rsync.%stat", "x", 1, 0));
  CommandResult foreign = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(0, foreign.exit_code) << foreign.output;
  // A flipped bit in a sealed value is.
  for (const fs::path& p : {cf, cd}) {
    auto attrs = UserXattrs(p);
    std::string name, value;
    for (const auto& [n, val] : attrs) {
      // An encrypted attribute name (not the shown change time, shown_ctime.h).
      if (n.size() > 20 && n != "user.envelopefs.ctime") name = n, value = val;
    }
    ASSERT_FALSE(value.empty()) << p;
    value[value.size() / 2] ^= 1;
    ASSERT_EQ(0, lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), 0));
  }
  CommandResult verify = RunCommand(Ctl(v, "verify --json " + Quote(v.cipher().string())));
  EXPECT_EQ(5, verify.exit_code) << verify.output;
  nlohmann::json j = ParseJson(verify);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(2u, j["damaged"].size()) << verify.output;
  EXPECT_EQ(1u, DamagedEndingIn(j, cf.filename().string()).size()) << verify.output;
  EXPECT_EQ(1u, DamagedEndingIn(j, cd.filename().string()).size()) << verify.output;
}

TEST(Xattrs, RenameHardLinkAndTruncationKeepAFilesXattrs) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_directory(v / "x");
  fs::create_directory(v / "y");
  WriteFile(v / "x" / "f", std::string(20000, 'f'));
  SetXattr(v / "x" / "f", "user.k", "file value");
  SetXattr(v / "x", "user.k", "dir value");
  fs::rename(v / "x" / "f", v / "y" / "g");
  fs::create_hard_link(v / "y" / "g", v / "h");
  fs::rename(v / "x", v / "y" / "x2");
  EXPECT_EQ("file value", GetXattr(v / "y" / "g", "user.k"));
  EXPECT_EQ("file value", GetXattr(v / "h", "user.k"));
  EXPECT_EQ("dir value", GetXattr(v / "y" / "x2", "user.k"));
  fs::resize_file(v / "y" / "g", 0);  // truncate(2) to zero: a fresh DEK, the same file id
  EXPECT_EQ("file value", GetXattr(v / "y" / "g", "user.k"));
  WriteFile(v / "h", "new content");  // open(O_TRUNC) on the other name
  EXPECT_EQ("file value", GetXattr(v / "y" / "g", "user.k"));
  SetXattr(v / "h", "user.k2", "second");
  v.Unmount();
  v.Mount();  // nothing cached
  ASSERT_MOUNTED(v);
  EXPECT_EQ("new content", ReadFile(v / "y" / "g"));
  EXPECT_EQ("file value", GetXattr(v / "y" / "g", "user.k"));
  EXPECT_EQ("second", GetXattr(v / "y" / "g", "user.k2"));
  EXPECT_EQ("dir value", GetXattr(v / "y" / "x2", "user.k"));
  fs::resize_file(v / "h", 0);
  EXPECT_EQ("second", GetXattr(v / "h", "user.k2"));
  v.Unmount();
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(0, verify.exit_code) << verify.output;
}

// Defense in depth: a symlink is never reached through /proc/self/fd for an xattr operation, and
// nothing of its (attacker-chosen) target is ever listed, read or written.
TEST(Xattrs, NeverFollowASymlinkInTheCipherDir) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "a", "a");
  SetXattr(v / "a", "user.tag", "secret tag");
  fs::create_symlink("a", v / "l");
  fs::path ca = CipherObjectOf(v, v / "a"), cl = CipherObjectOf(v, v / "l");
  ASSERT_FALSE(ca.empty() || cl.empty());
  v.Unmount();
  // The attacker points the backing symlink at an absolute path outside the cipher dir that
  // carries a valid envelopefs attribute.
  TempDir outside;
  fs::path victim = outside.path() / "victim";
  WriteFile(victim, "outside");
  CopyBackingXattrs(ca, victim);
  fs::remove(cl);
  fs::create_symlink(victim, cl);

  v.Mount();
  ASSERT_MOUNTED(v);
  char buf[4096];
  // listxattr and trusted.* reach the daemon (the cases that matter); the kernel itself refuses
  // user.* on a symlink before FUSE sees it, so those three lines only pin the outcome.
  EXPECT_EQ(0, llistxattr((v / "l").c_str(), buf, sizeof buf));  // nothing of the victim's
  EXPECT_EQ(-1, lsetxattr((v / "l").c_str(), "user.x", "v", 1, 0));
  EXPECT_EQ(-1, lgetxattr((v / "l").c_str(), "user.tag", buf, sizeof buf));
  EXPECT_EQ(-1, lremovexattr((v / "l").c_str(), "user.tag"));
  EXPECT_EQ(-1, lsetxattr((v / "l").c_str(), "trusted.x", "v", 1, 0));  // as root: reaches us
  EXPECT_EQ(-1, lremovexattr((v / "l").c_str(), "trusted.x"));
  v.Unmount();
  EXPECT_EQ(UserXattrs(ca), UserXattrs(victim));  // untouched
}

// --- symlink targets -------------------------------------------------------------------------

TEST(Symlinks, Format2TargetsAreRandomizedInTheCipherDir) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_symlink("../shared/target", v / "l1");
  fs::create_symlink("../shared/target", v / "l2");
  fs::path c1 = CipherObjectOf(v, v / "l1"), c2 = CipherObjectOf(v, v / "l2");
  ASSERT_FALSE(c1.empty() || c2.empty());
  EXPECT_EQ("../shared/target", fs::read_symlink(v / "l1").string());
  EXPECT_EQ("../shared/target", fs::read_symlink(v / "l2").string());
  struct stat st;
  ASSERT_EQ(0, lstat((v / "l1").c_str(), &st));
  EXPECT_EQ(16, st.st_size);  // the plaintext target's length
  // The longest target whose stored form is shorter than 4096 bytes (envelopefs-format(5)).
  const size_t longest = FormatVersion(v.cipher()) >= 2 ? 3023 : 3039;
  const std::string target(longest, 't');
  ASSERT_EQ(0, symlink(target.c_str(), (v / "longest").c_str())) << std::strerror(errno);
  EXPECT_EQ(target, fs::read_symlink(v / "longest").string());
  EXPECT_FALSE(IsLongSymlinkMarker(fs::read_symlink(CipherObjectOf(v, v / "longest")).string()));
  // One byte more is a long target, kept in a side file (long_symlinks_test.cc).
  ASSERT_EQ(0, symlink((target + "t").c_str(), (v / "long").c_str())) << std::strerror(errno);
  EXPECT_EQ(target + "t", fs::read_symlink(v / "long").string());
  EXPECT_TRUE(IsLongSymlinkMarker(fs::read_symlink(CipherObjectOf(v, v / "long")).string()));
  if (FormatVersion(v.cipher()) >= 2) {
    EXPECT_NE(fs::read_symlink(c1), fs::read_symlink(c2));
  } else {  // format 1: deterministic (envelopefs-format(5))
    EXPECT_EQ(fs::read_symlink(c1), fs::read_symlink(c2));
  }
  v.Unmount();
  CommandResult verify = RunCommand(Ctl(v, "verify " + Quote(v.cipher().string())));
  EXPECT_EQ(0, verify.exit_code) << verify.output;
}

}  // namespace
}  // namespace envelopefs::testing
