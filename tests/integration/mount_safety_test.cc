// Mounted tests of mounting itself: unsafe mount points refused, one daemon per cipher dir,
// -o options as fstab and mount.fuse3 pass them, `mount -t fuse.envelopefs` and an fstab line
// for real, the daemon's exit on SIGINT/SIGTERM with its volume_unmounted event, and ".." in
// directory listings.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

using json = nlohmann::json;

// The envelopefs mounts this process sees: mount id -> mount point.
std::map<std::string, std::string> EnvelopeMounts() {
  std::map<std::string, std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" - fuse.envelopefs ") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    out[id] = point;
  }
  return out;
}

// The source (fsname) of the envelopefs mount at `mnt`, or "".
std::string SourceOf(const fs::path& mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string found;
  while (std::getline(in, line)) {
    size_t dash = line.find(" - fuse.envelopefs ");
    if (dash == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point != mnt.string()) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string type;
    tail >> type >> found;
  }
  return found;
}

struct Attempt {
  CommandResult result;
  bool mounted = false;  // a new envelopefs mount appeared (and was unmounted again)
};

// Runs `envelopefs OPTIONS CIPHER MNT AFTER` in the background mode (it exits once mounted).
// A mount it made at MNT is unmounted again before returning, so a check that wrongly lets a
// mount through never leaves one behind. Only a new mount at MNT (a directory of this test) is
// ours: other programs may mount and unmount envelopefs volumes elsewhere at the same time.
Attempt TryMount(const std::string& options, const fs::path& cipher, const fs::path& mnt,
                 const std::string& after = "") {
  const std::string target = fs::weakly_canonical(mnt).string();
  const auto before = EnvelopeMounts();
  Attempt a;
  a.result = RunCommand(std::string(ENVELOPEFS_BINARY) + " " + options + " " + Quote(cipher) + " " +
                            Quote(mnt) + " " + after,
                        60);
  // A daemon that reported success has mounted; on a loaded machine the mount table may show
  // it a moment later, so it is looked for a while rather than left behind.
  for (int tries = 0; tries < (a.result.exit_code == 0 ? 50 : 1) && !a.mounted; ++tries) {
    if (tries > 0) usleep(100 * 1000);
    for (const auto& [id, point] : EnvelopeMounts()) {
      if (before.count(id) != 0 || point != target) continue;
      a.mounted = true;
      RunCommand("fusermount3 -u " + Quote(target), 30);
    }
  }
  if (a.mounted) usleep(500 * 1000);  // let the daemon record its files and release its lock
  return a;
}

// Unmounts `m` (a mount point of this test) when it goes out of scope, also after a failure.
struct UnmountGuard {
  fs::path m;
  ~UnmountGuard() {
    if (IsFuseMount(m))
      RunCommand("fusermount3 -u " + Quote(m) + " || fusermount3 -uz " + Quote(m));
  }
};

// A refusal: exit `code`, one line "envelopefs: ..." containing `text`, nothing mounted.
void ExpectRefused(const Attempt& a, int code, const std::string& text) {
  EXPECT_EQ(code, a.result.exit_code) << a.result.output;
  EXPECT_FALSE(a.mounted) << "mounted although refused: " << a.result.output;
  EXPECT_EQ(1, std::count(a.result.output.begin(), a.result.output.end(), '\n')) << a.result.output;
  EXPECT_EQ(0u, a.result.output.rfind("envelopefs: ", 0)) << a.result.output;
  EXPECT_NE(std::string::npos, a.result.output.find(text)) << a.result.output;
}

// Names, sizes and modification times of everything below `dir`: "nothing changed on disk".
std::string Snapshot(const fs::path& dir) {
  std::ostringstream out;
  std::set<std::string> lines;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    if (lstat(e.path().c_str(), &st) != 0) continue;
    std::ostringstream l;
    l << e.path().string() << ' ' << st.st_size << ' ' << st.st_mtim.tv_sec << '.'
      << st.st_mtim.tv_nsec;
    lines.insert(l.str());
  }
  for (const auto& l : lines) out << l << '\n';
  return out.str();
}

std::string KeyArgs(const MountedVolume& v) { return "--keyfile " + Quote(v.keyfile()) + " "; }

std::vector<json> AuditEvents(const MountedVolume& v, const std::string& event) {
  std::vector<json> out;
  std::istringstream in(ReadFile(v.cipher() / "envelopefs.audit.log"));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    if (j["event"] == event) out.push_back(j);
  }
  return out;
}

// d_ino of each entry of `dir`, by name, as readdir(3) returns them.
std::map<std::string, ino_t> ReadDirInodes(const fs::path& dir) {
  std::map<std::string, ino_t> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << dir;
    return out;
  }
  while (dirent* e = readdir(d)) out[e->d_name] = e->d_ino;
  closedir(d);
  return out;
}

ino_t InodeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(0, stat(p.c_str(), &st)) << p;
  return st.st_ino;
}

// --- safe mount points -------------------------------------------------------------------------

TEST(MountSafety, ANonEmptyMountPointIsRefusedUnlessNonempty) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "inside", "encrypted");
  v.Unmount();
  WriteFile(v.mnt() / "underneath", "would be hidden");
  const std::string cipher_before = Snapshot(v.cipher());

  ExpectRefused(TryMount(KeyArgs(v), v.cipher(), v.mnt()), 2, "is not empty");
  EXPECT_EQ(cipher_before, Snapshot(v.cipher())) << "a refused mount changed the cipher dir";
  EXPECT_EQ("would be hidden", ReadFile(v.mnt() / "underneath"));

  // --nonempty and -o nonempty allow it; the files underneath are hidden while mounted.
  v.set_mount_flags("--nonempty");
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("encrypted", ReadFile(v / "inside"));
  EXPECT_FALSE(fs::exists(v / "underneath"));
  v.Unmount();
  v.set_mount_flags("-o nonempty");
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("encrypted", ReadFile(v / "inside"));
  v.Unmount();
  EXPECT_EQ("would be hidden", ReadFile(v.mnt() / "underneath"));
}

TEST(MountSafety, AMountPointThatIsAlreadyMountedIsRefused) {
  MountedVolume v, w;
  ASSERT_MOUNTED(v);
  ASSERT_MOUNTED(w);
  WriteFile(v / "f", "v's file");
  w.Unmount();
  // Stacking w on v's mount point.
  ExpectRefused(TryMount(KeyArgs(w), w.cipher(), v.mnt()), 2,
                v.mnt().string() + " is already a mount point");
  EXPECT_EQ("v's file", ReadFile(v / "f"));
  const auto mounts = EnvelopeMounts();
  EXPECT_EQ(1, std::count_if(mounts.begin(), mounts.end(),
                             [&](const auto& m) { return m.second == v.mnt().string(); }));
}

TEST(MountSafety, TheCipherDirItselfOrAnythingInsideOrAroundItIsRefused) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  v.Unmount();
  fs::create_directory(v.cipher() / "sub");
  const fs::path root = v.cipher().parent_path();
  fs::create_directory_symlink(v.cipher(), root / "link-to-cipher");
  const std::string before = Snapshot(v.cipher());

  ExpectRefused(TryMount(KeyArgs(v), v.cipher(), v.cipher()), 2, "is the cipher dir itself");
  // Through a symlink: paths are resolved before they are compared.
  ExpectRefused(TryMount(KeyArgs(v), v.cipher(), root / "link-to-cipher"), 2,
                "is the cipher dir itself");
  ExpectRefused(TryMount(KeyArgs(v), root / "link-to-cipher", v.cipher() / "sub"), 2,
                "is inside the cipher dir");
  // A mount point that contains the cipher dir would hide it (even with --nonempty).
  ExpectRefused(TryMount(KeyArgs(v) + "--nonempty", v.cipher(), root), 2,
                "is inside the mount point");
  EXPECT_EQ(before, Snapshot(v.cipher())) << "a refused mount changed the cipher dir";
}

// --- one daemon per cipher dir -----------------------------------------------------------------

TEST(MountSafety, ASecondDaemonOnTheSameCipherDirIsRefusedNamingTheMount) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  // The mount's source is the cipher dir (what the message is found by).
  EXPECT_EQ(v.cipher().string(), SourceOf(v.mnt()));
  WriteFile(v / "f", "data");
  const fs::path other = v.cipher().parent_path() / "other";
  fs::create_directory(other);
  const fs::path link = v.cipher().parent_path() / "link-to-cipher";
  fs::create_directory_symlink(v.cipher(), link);

  const std::string named = "is already mounted at " + v.mnt().string();
  ExpectRefused(TryMount(KeyArgs(v), v.cipher(), other), 8, named);
  // The same directory under another name is the same cipher dir.
  ExpectRefused(TryMount(KeyArgs(v), link, other), 8, named);
  // A foreground daemon is refused the same way (before it asks for a key).
  CommandResult fg = RunCommand(std::string(ENVELOPEFS_BINARY) + " -f " + Quote(v.cipher()) + " " +
                                    Quote(other) + " </dev/null",
                                30);
  EXPECT_EQ(8, fg.exit_code) << fg.output;
  EXPECT_NE(std::string::npos, fg.output.find(named)) << fg.output;
  EXPECT_EQ("data", ReadFile(v / "f"));

  // Once the first daemon is gone, the lock is free.
  v.Unmount();
  Attempt again = TryMount(KeyArgs(v), v.cipher(), other);
  EXPECT_EQ(0, again.result.exit_code) << again.result.output;
  EXPECT_TRUE(again.mounted);
}

TEST(MountSafety, TheOtherMountIsNamedAlsoWithSpacesAndCommasInItsPaths) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  v.Unmount();
  const fs::path root = v.cipher().parent_path();
  const fs::path cipher = root / "ci pher,1", mnt = root / "m nt", other = root / "other";
  fs::rename(v.cipher(), cipher);
  fs::create_directory(mnt);
  fs::create_directory(other);
  UnmountGuard guard{mnt};
  const std::string daemon = std::string(ENVELOPEFS_BINARY) + " --keyfile " + Quote(v.keyfile());
  CommandResult first = RunCommand(daemon + " " + Quote(cipher) + " " + Quote(mnt));
  ASSERT_EQ(0, first.exit_code) << first.output;
  EXPECT_EQ("data", ReadFile(mnt / "f"));
  // The source is the cipher dir, comma and all (escaped for FUSE, unescaped from mountinfo).
  Attempt second = TryMount(KeyArgs(v), cipher, other);
  ExpectRefused(second, 8, "is already mounted at " + mnt.string() + " by");
  EXPECT_EQ(0, RunCommand("fusermount3 -u " + Quote(mnt)).exit_code);
  fs::rename(cipher, v.cipher());  // for the fixture's teardown
}

TEST(MountSafety, AVolumeCanBeRemountedRightAfterItsUnmount) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  for (int i = 0; i < 50; ++i) WriteFile(v / ("f" + std::to_string(i)), "x");
  // The daemon still records the files' sizes after the unmount; the next daemon waits for it
  // instead of reporting it.
  ASSERT_EQ(0, RunCommand("fusermount3 -u " + Quote(v.mnt())).exit_code);
  Attempt a = TryMount(KeyArgs(v), v.cipher(), v.mnt());
  EXPECT_EQ(0, a.result.exit_code) << a.result.output;
  EXPECT_TRUE(a.mounted);
  EXPECT_EQ(0, v.Stop(SIGTERM)) << v.DaemonLog();  // reaps the first daemon
}

// --- -o options (fstab, mount.fuse3) -----------------------------------------------------------

TEST(MountOptions, KeySourceAndDaemonOptionsWorkAsDashO) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  v.Unmount();
  // What mount.fuse3 runs for an fstab line: CIPHERDIR MOUNTPOINT -o OPTIONS, with generic
  // mount options that FUSE must not see.
  Attempt a =
      TryMount("", v.cipher(), v.mnt(),
               "-o " + Quote("rw,keyfile=" + v.keyfile().string() +
                             ",ro,nosuid,nodev,noexec,noatime,defaults,auto,noauto,nofail,_netdev,"
                             "user,comment=x,x-systemd.automount,x-systemd.requires=a.mount,"
                             "X-mount.mkdir,relatime,nodiratime,seal_interval=1,dev,suid"));
  EXPECT_EQ(0, a.result.exit_code) << a.result.output;
  EXPECT_TRUE(a.mounted);

  // Mounted for real: read-only (ro went to the daemon), readable with the key file.
  UnmountGuard guard{v.mnt()};
  const std::string probe =
      std::string(ENVELOPEFS_BINARY) + " " + Quote(v.cipher()) + " " + Quote(v.mnt()) + " -o " +
      Quote("keyfile=" + v.keyfile().string() + ",ro,nosuid,nodev") + " || exit 90; cat " +
      Quote(v.mnt() / "f") + "; echo; if echo x > " + Quote(v.mnt() / "g") +
      " 2>/dev/null; then echo WRITABLE; fi; grep ' " + v.mnt().string() +
      " ' /proc/self/mountinfo; fusermount3 -u " + Quote(v.mnt());
  CommandResult r = RunCommand(probe);
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("data\n")) << r.output;
  EXPECT_EQ(std::string::npos, r.output.find("WRITABLE")) << r.output;
  EXPECT_NE(std::string::npos, r.output.find(" ro,nosuid,nodev")) << r.output;
  EXPECT_FALSE(IsFuseMount(v.mnt()));
}

TEST(MountOptions, BadDashOOptionsFailWithOneLine) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  v.Unmount();
  auto with = [&](const std::string& options) {
    return TryMount("", v.cipher(), v.mnt(), "-o " + Quote(options));
  };
  const std::string key = "keyfile=" + v.keyfile().string() + ",";
  ExpectRefused(with(key + "bogus"), 2, "unknown mount option bogus");
  ExpectRefused(with(key + "strictatime"), 2, "unknown mount option");
  ExpectRefused(with("keyfile"), 2, "needs a value");
  ExpectRefused(with(key + "ro=yes"), 2, "takes no value");
  ExpectRefused(with(key + "fsname=x"), 2, "is set by envelopefs");
  // A helper must never get a daemon that stays in the foreground.
  ExpectRefused(with(key + "foreground"), 2, "unknown mount option");
  ExpectRefused(with(key + "passfile=" + v.keyfile().string()), 2, "mutually exclusive");
}

// The key-source options are envelopectl's (key_source_options.h): every spelling mounts, and
// bad ones are refused with the same line as envelopectl's.
TEST(MountOptions, EveryKeyOptionSpellingMountsAndBadOnesAreRefused) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "data");
  v.Unmount();
  const std::string key = v.keyfile().string();
  for (const std::string& options :
       {"--keyfile " + Quote(key), "--keyfile=" + Quote(key), "--keyfile - <" + Quote(key),
        "--insecure-keyfile --keyfile " + Quote(key), "-o " + Quote("keyfile=" + key)}) {
    Attempt a = TryMount(options, v.cipher(), v.mnt());
    EXPECT_EQ(0, a.result.exit_code) << options << ": " << a.result.output;
    EXPECT_TRUE(a.mounted) << options;
  }
  ExpectRefused(TryMount("--keyfile=", v.cipher(), v.mnt()), 2,
                "option --keyfile needs a file name");
  ExpectRefused(
      TryMount("--keyfile=" + Quote(key) + " --passfile " + Quote(key), v.cipher(), v.mnt()), 2,
      "--keyfile and --passfile are mutually exclusive");
  ExpectRefused(TryMount("--new-keyfile " + Quote(key), v.cipher(), v.mnt()), 2,
                "unknown option --new-keyfile");
  // The command and PKCS#11 options (master_sources_test.cc mounts with them).
  const std::pair<std::string, std::string> refused[] = {
      {"--master-command=", "option --master-command needs a command"},
      {"-o master_command=", "mount option master_command= needs a value"},
      {"--keyfile " + Quote(key) + " --master-command true",
       "--keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and --recovery-key are "
       "mutually exclusive"},
      {"--pkcs11-module=", "option --pkcs11-module needs a path"},
      {"--pkcs11-token=", "option --pkcs11-token needs a label"},
      {"--pkcs11-key 'a\"b'", "option --pkcs11-key: a PKCS#11 label is 1 to 32 printable"},
      {"--pin-file=", "option --pin-file needs a file name"},
      {"--pkcs11-module m.so --pkcs11-key k",
       "a PKCS#11 master key needs --pkcs11-module PATH, --pkcs11-token LABEL and --pkcs11-key"},
      {"--pkcs11-create-key", "unknown option --pkcs11-create-key"},
      {"--new-master-command true", "unknown option --new-master-command"},
      {"--kmip-server=", "option --kmip-server needs HOST:PORT"},
      {"-o kmip_server=kms", "--kmip-server must be HOST:PORT"},
      {"--kmip-server kms:5696 --tls-key k", "a KMIP master key needs --kmip-server HOST:PORT"},
      {"--kmip-key-id 'a\"b'", "option --kmip-key-id: a KMIP key id is 1 to 64 printable"},
      {"--kmip-create-key", "unknown option --kmip-create-key"},
      {"--new-kmip-server k:1", "unknown option --new-kmip-server"},
      {"--keyfile " + Quote(key) + " -o tls_cert=c",
       "--keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and --recovery-key are "
       "mutually exclusive"},
      {"--master-command " + Quote("cat " + key) + " --pkcs11-token t",
       "--keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and --recovery-key are "
       "mutually exclusive"},
  };
  for (const auto& [options, message] : refused) {
    ExpectRefused(TryMount(options, v.cipher(), v.mnt()), 2, message);
  }
}

// The daemon reachable as `envelopefs` where mount.fuse3 looks for it. mount(8) gives its
// helpers no PATH, so /bin/sh's default one applies. The test installs the build with
// `cmake --install` (DESTDIR in a temp dir), checks that its bin directory is on that default
// path, and in a private mount namespace shows the installed daemon in /usr/local/bin, so the
// system is not changed. The script unmounts on exit; a daemon left behind anyway (found by the
// unique cipher dir in its command line) is stopped and fails the test.
class MountHelper : public ::testing::Test {
 protected:
  void TearDown() override {
    if (cipher_.empty()) return;
    std::map<pid_t, std::string> left;
    for (int i = 0; i < 100; ++i) {  // a daemon may take a moment to exit after its unmount
      left = DaemonsOf(cipher_);
      if (left.empty()) return;
      usleep(100 * 1000);
    }
    for (const auto& [pid, cmdline] : left) {
      ADD_FAILURE() << "a daemon was left running: " << cmdline;
      kill(pid, SIGTERM);  // unmounts in its namespace and exits
    }
  }

  // Processes whose command line names `cipher` (unique to this test) as an argument.
  static std::map<pid_t, std::string> DaemonsOf(const fs::path& cipher) {
    std::map<pid_t, std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      const std::string pid = e.path().filename();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (std::stoi(pid) == getpid()) continue;
      std::string cmdline = ReadFile(e.path() / "cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find(" " + cipher.string() + " ") == std::string::npos) continue;
      out[std::stoi(pid)] = cmdline;
    }
    return out;
  }
  fs::path cipher_;
};

TEST_F(MountHelper, MountDashTFuseEnvelopefsAndAnFstabLineWork) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  cipher_ = v.cipher();
  WriteFile(v / "hello", "hello from the volume");
  v.Unmount();
  const fs::path root = v.cipher().parent_path();
  const fs::path bin = root / "bin", m1 = root / "m1", m2 = root / "m2";
  fs::create_directories(bin);
  fs::create_directories(m1);
  fs::create_directories(m2);
  CommandResult install =
      RunCommand("DESTDIR=" + Quote(root / "inst") + " " + ENVELOPEFS_CMAKE_COMMAND +
                     " --install " + Quote(ENVELOPEFS_BUILD_DIR),
                 120);
  ASSERT_EQ(0, install.exit_code) << install.output;
  const fs::path installed =
      root / "inst" / fs::path(ENVELOPEFS_INSTALL_BINDIR).relative_path() / "envelopefs";
  ASSERT_TRUE(fs::exists(installed)) << install.output;
  CommandResult sh_path = RunCommand("env -i /bin/sh -c 'echo \":$PATH:\"'");
  EXPECT_NE(std::string::npos,
            sh_path.output.find(":" + std::string(ENVELOPEFS_INSTALL_BINDIR) + ":"))
      << "cmake --install puts envelopefs where mount.fuse3 does not look: " << sh_path.output;
  fs::create_symlink(installed, bin / "envelopefs");
  WriteFile(
      root / "fstab",
      v.cipher().string() + " " + m2.string() + " fuse.envelopefs keyfile=" + v.keyfile().string() +
          ",nosuid,nodev,nofail,_netdev,x-systemd.requires-mounts-for=" + root.string() + " 0 0\n");
  const std::string script =
      "mount --bind " + Quote(bin) + " /usr/local/bin || exit 90\n" + "M1=" + Quote(m1) +
      " M2=" + Quote(m2) + "\n" +
      "trap 'fusermount3 -u \"$M1\" 2>/dev/null; fusermount3 -u \"$M2\" 2>/dev/null' EXIT\n" +
      "trap 'exit 99' INT TERM\n" +
      // As the issue has it: mount -t fuse.envelopefs -o keyfile=...,allow_other CIPHER MNT
      "mount -t fuse.envelopefs -o " + Quote("keyfile=" + v.keyfile().string() + ",allow_other") +
      " " + Quote(v.cipher()) + " " + Quote(m1) + " || exit 91\n" + "echo \"m1: $(cat " +
      Quote(m1 / "hello") + ")\"\n" + "grep ' " + m1.string() + " ' /proc/self/mountinfo\n" +
      "echo written > " + Quote(m1 / "new") + " || exit 92\n" + "fusermount3 -u " + Quote(m1) +
      " || exit 93\n" +
      // The fstab line, as `mount MNT` (or systemd) uses it; the first daemon may still be
      // finishing: the second one waits for its lock.
      "mount -T " + Quote(root / "fstab") + " " + Quote(m2) + " || exit 94\n" +
      "echo \"m2: $(cat " + Quote(m2 / "hello") + ") $(cat " + Quote(m2 / "new") + ")\"\n" +
      "grep ' " + m2.string() + " ' /proc/self/mountinfo\n" + "fusermount3 -u " + Quote(m2) +
      " || exit 95\n";
  WriteFile(root / "script.sh", script);
  CommandResult r = RunCommand("unshare -m sh " + Quote(root / "script.sh"), 120);
  ASSERT_EQ(0, r.exit_code) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("m1: hello from the volume\n")) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("m2: hello from the volume written\n")) << r.output;
  // Source, type and options as mount(8) and FUSE set them.
  EXPECT_NE(std::string::npos, r.output.find(" - fuse.envelopefs " + v.cipher().string() + " "))
      << r.output;
  EXPECT_NE(std::string::npos, r.output.find("allow_other")) << r.output;
  EXPECT_NE(std::string::npos, r.output.find(m2.string() + " rw,nosuid,nodev")) << r.output;
  // Nothing of this is visible outside the namespace.
  EXPECT_FALSE(IsFuseMount(m1));
  EXPECT_FALSE(IsFuseMount(m2));
  // Both mounts were logged with their mount points, and their unmounts (the daemon may still
  // be finishing when its unmount returns).
  std::vector<json> unmounted;
  for (int i = 0; i < 100 && unmounted.size() < 3; ++i) {
    unmounted = AuditEvents(v, "volume_unmounted");
    usleep(100 * 1000);
  }
  ASSERT_EQ(3u, unmounted.size());  // the fixture's mount, m1, m2
  EXPECT_EQ(m1.string(), unmounted[1]["mountpoint"]);
  EXPECT_EQ(m2.string(), unmounted[2]["mountpoint"]);
}

// --- daemon lifecycle --------------------------------------------------------------------------

class Lifecycle : public ::testing::TestWithParam<int> {};

TEST_P(Lifecycle, AForegroundDaemonStoppedBySignalUnmountsExitsZeroAndLogsIt) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  WriteFile(v / "f", "sealed before exit");
  const std::string signal_name = GetParam() == SIGINT ? "SIGINT" : "SIGTERM";
  EXPECT_EQ(0, v.Stop(GetParam())) << v.DaemonLog();
  EXPECT_FALSE(IsFuseMount(v.mnt()));
  auto unmounted = AuditEvents(v, "volume_unmounted");
  ASSERT_EQ(1u, unmounted.size());
  EXPECT_EQ(v.mnt().string(), unmounted[0]["mountpoint"]);
  EXPECT_EQ("signal " + signal_name, unmounted[0]["reason"]);
  EXPECT_EQ("envelopefs", unmounted[0]["program"]);
  // It follows the mount's unlock and is authenticated like it (the audit verifies the chain).
  auto unlocked = AuditEvents(v, "volume_unlocked");
  ASSERT_FALSE(unlocked.empty());
  EXPECT_GT(unmounted[0]["seq"].get<uint64_t>(), unlocked.back()["seq"].get<uint64_t>());
  EXPECT_TRUE(unmounted[0].contains("mac")) << unmounted[0].dump();
  CommandResult audit = RunCommand(std::string(ENVELOPECTL_BINARY) + " audit --keyfile " +
                                   Quote(v.keyfile()) + " " + Quote(v.cipher()));
  EXPECT_EQ(0, audit.exit_code) << audit.output;  // 5 if the log's chain or a MAC is broken
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ("sealed before exit", ReadFile(v / "f"));
}

INSTANTIATE_TEST_SUITE_P(MountSafety, Lifecycle, ::testing::Values(SIGINT, SIGTERM),
                         [](const auto& info) {
                           return std::string(info.param == SIGINT ? "SIGINT" : "SIGTERM");
                         });

TEST(MountSafety, AnUnmountIsLoggedAndNotWhenTheAuditLogIsOff) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  v.Unmount();
  auto unmounted = AuditEvents(v, "volume_unmounted");
  ASSERT_EQ(1u, unmounted.size());
  EXPECT_EQ("unmounted", unmounted[0]["reason"]);
  CommandResult off = RunCommand(std::string(ENVELOPECTL_BINARY) + " keys policy --keyfile " +
                                 Quote(v.keyfile()) + " --audit-log off " + Quote(v.cipher()));
  ASSERT_EQ(0, off.exit_code) << off.output;
  const std::string log_before = ReadFile(v.cipher() / "envelopefs.audit.log");
  v.Mount();
  ASSERT_MOUNTED(v);
  v.Unmount();
  EXPECT_EQ(log_before, ReadFile(v.cipher() / "envelopefs.audit.log"));
}

// --- listings ----------------------------------------------------------------------------------

TEST(MountListing, DotAndDotDotAreListedWithTheirInodes) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  fs::create_directories(v / "a/b");
  fs::create_directories(v / "c");
  WriteFile(v / "a/file", "x");

  auto root = ReadDirInodes(v.mnt());
  ASSERT_EQ(1u, root.count(".")) << "root";
  ASSERT_EQ(1u, root.count("..")) << "root";
  EXPECT_EQ(InodeOf(v.mnt()), root["."]);
  auto a = ReadDirInodes(v / "a");
  ASSERT_EQ(1u, a.count("..")) << "a";
  EXPECT_EQ(InodeOf(v / "a"), a["."]);
  EXPECT_EQ(InodeOf(v.mnt()), a[".."]);
  EXPECT_EQ(4u, a.size());  // ., .., b, file
  auto b = ReadDirInodes(v / "a/b");
  ASSERT_EQ(1u, b.count(".."));
  EXPECT_EQ(InodeOf(v / "a"), b[".."]);
  EXPECT_EQ(2u, b.size());

  // After a move, ".." is the new parent.
  fs::rename(v / "a/b", v / "c/b");
  auto moved = ReadDirInodes(v / "c/b");
  EXPECT_EQ(InodeOf(v / "c"), moved[".."]);

  // As ls shows it.
  CommandResult ls = RunCommand("ls -a " + Quote(v / "c"));
  EXPECT_EQ(".\n..\nb\n", ls.output);
}

}  // namespace
}  // namespace envelopefs::testing
