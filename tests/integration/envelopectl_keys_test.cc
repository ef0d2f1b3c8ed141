// Tests of envelopectl keys rotate/retire and rewrap, run as a separate process on real volumes:
// shards, rewrap killed at random points, and rotation and rewrap while the volume is mounted
// and being written (MountedVolume).
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

// Whoever can write the cipher dir can make a directory unreadable to the admin's tool: retire
// then cannot prove that no file in it uses the key, and refuses (the walk never skips one).
TEST(Envelopectl, RetireRefusesWhenADirectoryCannotBeRead) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  OfflineVolume v;
  v.Write("lake/part-0.csv", "a,b\n");
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  const fs::path hidden = v.CipherPath("lake");
  // Everything is nobody's but the directory, which nobody may not open.
  ASSERT_EQ(0, RunCommand("chown -R 65534:65534 " + Quote(v.root())).exit_code);
  ASSERT_EQ(0, chown(hidden.c_str(), 0, 0));
  ASSERT_EQ(0, chmod(hidden.c_str(), 0700));
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  CommandResult retire =
      RunCommand(as_nobody + v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1"));
  EXPECT_NE(0, retire.exit_code) << retire.output;
  EXPECT_NE(std::string::npos, retire.output.find("open directory")) << retire.output;
  EXPECT_NE(std::string::npos, retire.output.find(hidden.filename().string())) << retire.output;
  // Version 1 is still there: root (who can read the directory) sees the file that uses it.
  CommandResult again = RunCommand(v.Ctl("keys retire " + Quote(v.cipher()) + " --version 1"));
  EXPECT_EQ(8, again.exit_code) << again.output;
  EXPECT_NE(std::string::npos, again.output.find("still used by 1 file")) << again.output;
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
  // The files it names are the first in walk order, whatever the number of workers.
  const std::string retire_v1 = "keys retire " + Quote(v.cipher()) + " --version 1";
  CommandResult one = RunCommand(v.Ctl(retire_v1 + " --jobs 1"));
  CommandResult three = RunCommand(v.Ctl(retire_v1 + " --jobs 3"));
  EXPECT_EQ(8, three.exit_code) << three.output;
  EXPECT_NE(std::string::npos, three.output.find("still used by 20 files")) << three.output;
  EXPECT_EQ(one.output, three.output);

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

// A keyring change killed between writing its temporary file and renaming it leaves a copy of
// the keyring at the root (".envelopefs.tmp.*"), with the wrapped KEKs of its time: a version
// retired later, or under a master key changed later, would live on in it. The next keyring
// change removes such copies, and only those.
TEST(Envelopectl, AKeyringChangeRemovesKeyringCopiesAKilledChangeLeftBehind) {
  OfflineVolume v;
  const fs::path copy = v.cipher() / ".envelopefs.tmp.00112233aabbccdd";
  const fs::path partial = v.cipher() / ".envelopefs.tmp.0000000000000001";
  const fs::path other = v.cipher() / ".envelopefs.tmp.0123456789abcdef";
  const fs::path temp_dir = v.cipher() / ".envelopefs.tmp.fedcba9876543210";
  fs::copy_file(v.cipher() / "envelopefs.keyring", copy);
  WriteFile(partial, ReadFile(v.cipher() / "envelopefs.keyring").substr(0, 30));
  WriteFile(other, "a side file being written");
  fs::create_directory(temp_dir);
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  EXPECT_FALSE(fs::exists(copy));
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_TRUE(fs::exists(other)) << "not a keyring: another writer's";
  EXPECT_TRUE(fs::is_directory(temp_dir));
  // The same after a change of master key (the copy was under the old one).
  fs::copy_file(v.cipher() / "envelopefs.keyring", copy);
  const fs::path new_key = v.root() / "new.key";
  WriteSecretFile(new_key, std::string(32, 'k'));
  ASSERT_EQ(0, RunCommand(v.Ctl("keys change-master --new-keyfile " + Quote(new_key) + " " +
                                Quote(v.cipher())))
                   .exit_code);
  EXPECT_FALSE(fs::exists(copy));
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
