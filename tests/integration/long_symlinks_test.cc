// Symlink targets of up to 4,095 bytes (PATH_MAX - 1) whose encrypted form does not fit in a
// backing symlink: the backing object stays a symlink whose target names a side file at the
// volume root (long_symlink.h). Mounted: the side file holds no plaintext and goes with the
// last link; a damaged or missing one reads as EIO, logged with the entry. Offline: envelopectl
// verify, audit, ls and decrypt treat it as part of its symlink.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "envelopectl_fixture.h"
#include "envelopefs/long_symlink.h"
#include "mount_fixture.h"
#include "offline_volume.h"

namespace envelopefs::testing {
namespace {

// A 4,095-byte target holding a recognizable phrase (searched for in the cipher dir).
std::string LongTarget(char tag) {
  std::string t = "../PLAINTEXT-TARGET-";
  while (t.size() < 4095) t += tag;
  return t;
}

std::vector<fs::path> SideFiles(const fs::path& cipher) {
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(cipher)) {
    if (e.path().filename().string().rfind(kLongSymlinkPrefix, 0) == 0) found.push_back(e.path());
  }
  return found;
}

// The backing symlink below `cipher` whose stored target is the marker of side file `side`.
fs::path LinkOf(const fs::path& cipher, const fs::path& side) {
  for (const auto& e : fs::recursive_directory_iterator(cipher)) {
    if (e.is_symlink() && fs::read_symlink(e.path()) == side.filename()) return e.path();
  }
  return {};
}

int ReadlinkErr(const fs::path& link, std::string* target) {
  std::string buf(8192, '\0');
  ssize_t n = readlink(link.c_str(), buf.data(), buf.size());
  if (n < 0) return errno;
  *target = buf.substr(0, static_cast<size_t>(n));
  return 0;
}

TEST(LongSymlinks, SideFileHoldsNoPlaintextAndGoesWithTheLastLink) {
  MountedVolume v;
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  fs::create_directory(v / "d");
  fs::create_directory(v / "e");
  fs::create_symlink(std::string(100, 's'), v / "short");
  EXPECT_TRUE(SideFiles(v.cipher()).empty()) << "a short target keeps the inline encoding";
  const std::string target = LongTarget('x');
  fs::create_symlink(target, v / "d" / "long");
  std::vector<fs::path> sides = SideFiles(v.cipher());
  ASSERT_EQ(1u, sides.size());
  const fs::path backing = LinkOf(v.cipher(), sides[0]);
  ASSERT_FALSE(backing.empty());
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(backing))) << "backup tools see a symlink";
  for (const fs::path& p : FilesBelow(v.cipher())) {
    EXPECT_EQ(std::string::npos, ReadFile(p).find("PLAINTEXT-TARGET")) << p;
  }
  // Rename across directories, a hard link, then the last link replaced by a rename.
  fs::rename(v / "d" / "long", v / "e" / "moved");
  fs::create_hard_link(v / "e" / "moved", v / "d" / "hard");
  for (const char* p : {"e/moved", "d/hard"}) {
    std::string got;
    ASSERT_EQ(0, ReadlinkErr(v / p, &got)) << p;
    EXPECT_EQ(target, got) << p;
  }
  fs::remove(v / "e" / "moved");
  EXPECT_EQ(1u, SideFiles(v.cipher()).size()) << "a link remains";
  WriteFile(v / "d" / "file", "x");
  fs::rename(v / "d" / "file", v / "d" / "hard");
  EXPECT_TRUE(SideFiles(v.cipher()).empty()) << "the last link was replaced";
  fs::create_symlink(target, v / "again");
  ASSERT_EQ(1u, SideFiles(v.cipher()).size());
  fs::remove(v / "again");
  EXPECT_TRUE(SideFiles(v.cipher()).empty()) << "the last link was unlinked";
  v.Unmount();
  v.Mount();
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  std::string got;
  EXPECT_EQ(0, ReadlinkErr(v / "short", &got));
  EXPECT_EQ(std::string(100, 's'), got);
}

TEST(LongSymlinks, ADamagedOrMissingSideFileReadsAsEioAndIsLogged) {
  MountedVolume v;
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  fs::create_symlink(LongTarget('a'), v / "a");
  std::vector<fs::path> sides = SideFiles(v.cipher());
  ASSERT_EQ(1u, sides.size());
  const fs::path side_a = sides[0];
  fs::create_symlink(LongTarget('b'), v / "b");
  const fs::path link_a = LinkOf(v.cipher(), side_a);
  ASSERT_FALSE(link_a.empty());
  v.Unmount();
  std::vector<uint8_t> byte = ReadBytes(side_a);
  const std::vector<uint8_t> original = byte;
  byte.assign(1, static_cast<uint8_t>(original[40] ^ 0x10));
  fs::permissions(side_a, fs::perms::owner_write, fs::perm_options::add);
  WriteBytesAt(side_a, 40, byte);
  for (const char* why : {"does not authenticate", "missing"}) {
    v.Mount();
    ASSERT_TRUE(v.mounted()) << v.DaemonLog();
    std::string got;
    EXPECT_EQ(EIO, ReadlinkErr(v / "a", &got)) << why;
    EXPECT_EQ(0, ReadlinkErr(v / "b", &got)) << why;
    EXPECT_EQ(LongTarget('b'), got);
    const std::string log = v.DaemonLog();
    EXPECT_TRUE(Contains(log, link_a.filename().string())) << log;
    EXPECT_TRUE(Contains(log, "side file " + side_a.filename().string() + " " + why)) << log;
    v.Unmount();
    fs::remove(side_a);
  }
}

TEST(LongSymlinks, EnvelopectlTreatsTheSideFileAsPartOfItsSymlink) {
  OfflineVolume v;
  v.Write("a", "file");
  v.Symlink("d/long", LongTarget('l'));
  v.Symlink("top", LongTarget('t'));
  v.Symlink("d/short", "../a");
  v.Link("d/long", "hard");
  ASSERT_EQ(2u, SideFiles(v.cipher()).size());
  int rc = -1;
  json verify = CtlJson(v, "verify " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc) << verify.dump();
  EXPECT_EQ(6, verify["entries"]) << verify.dump();  // a, d, d/long, d/short, top, hard
  json audit = CtlJson(v, "audit " + Quote(v.cipher()), &rc);
  EXPECT_EQ(0, rc) << audit.dump();
  EXPECT_TRUE(audit["bad_names"].empty()) << audit.dump();
  EXPECT_TRUE(audit["unencrypted"].empty()) << audit.dump();
  CommandResult ls = RunCommand(v.Ctl("ls " + Quote(v.cipher())));
  EXPECT_EQ(0, ls.exit_code) << ls.output;
  EXPECT_EQ("a\nd/\nd/long\nd/short\nhard\ntop\n", ls.output);
  const fs::path out = v.root() / "out";
  CommandResult r = RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(out)));
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_EQ(LongTarget('l'), fs::read_symlink(out / "d" / "long").string());
  EXPECT_EQ(LongTarget('l'), fs::read_symlink(out / "hard").string());
  EXPECT_EQ(LongTarget('t'), fs::read_symlink(out / "top").string());

  // A damaged side file: verify and decrypt name the symlink.
  const fs::path side = SideFiles(v.cipher())[0];
  const fs::path link = LinkOf(v.cipher(), side);
  fs::remove(side);
  verify = CtlJson(v, "verify " + Quote(v.cipher()), &rc);
  EXPECT_NE(0, rc) << verify.dump();
  EXPECT_TRUE(Contains(verify.dump(), link.string())) << verify.dump();
  EXPECT_TRUE(Contains(verify.dump(), "missing")) << verify.dump();
  r = RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(v.root() / "out2")));
  EXPECT_NE(0, r.exit_code) << r.output;
  EXPECT_TRUE(Contains(r.output, "side file")) << r.output;
}

}  // namespace
}  // namespace envelopefs::testing
