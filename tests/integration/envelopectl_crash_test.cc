// Crash injection for envelopectl: `keys rotate`, `keys retire`, `keys change-master` (key file
// to passphrase and back) and `rewrap` are SIGKILLed after a number of microseconds drawn from a
// seed (up to a little past the command's own run time, so that every window, however narrow,
// can be hit), on a volume of a few hundred files. After every kill: exactly one of the old and
// the new key state opens the volume, it mounts, every file reads back exactly, `verify` and
// `audit` pass, and the killed command completes when run again. Rotate and rewrap are also
// killed while the volume is mounted and written. The seed is printed first and with every
// failure (ENVELOPEFS_CRASH_SEED overrides it; ENVELOPEFS_CRASH_ROUNDS=N runs N rounds for a
// longer hunt). Not thread-safe (gtest assertions, one fixture per test).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "envelopectl_fixture.h"
#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDefaultRounds = 3;  // each round mounts; sanitizer builds are several times slower
#else
constexpr int kDefaultRounds = 8;
#endif
constexpr int kFiles = 300;

using Clock = std::chrono::steady_clock;

// How to give the volume's current master key: "--keyfile FILE" or "--passfile FILE".
struct Key {
  std::string option;
  fs::path file;
  std::string Flags() const { return option + " " + Quote(file); }
};

// Runs `envelopectl ARGS` and SIGKILLs it after `delay`. Returns true if the kill landed before
// it exited; otherwise `*ran` is how long it took (to within about 20 microseconds).
bool KilledAfter(const std::vector<std::string>& args, std::chrono::microseconds delay,
                 std::chrono::microseconds* ran) {
  const auto start = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    setenv("ENVELOPEFS_TEST_FAST_KDF", "1", 1);
    std::vector<char*> argv{const_cast<char*>(ENVELOPECTL_BINARY)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(ENVELOPECTL_BINARY, argv.data());
    _exit(127);
  }
  // Polls rather than sleeps through the delay: a sleep overshoots short delays, and the poll
  // tells when a command that was not killed finished.
  const auto deadline = start + delay;
  int status = 0;
  while (Clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      *ran = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
      return false;
    }
    if (deadline - Clock::now() > std::chrono::microseconds(100)) usleep(20);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

std::vector<std::string> Words(const std::string& command, const Key& key, const fs::path& dir) {
  std::vector<std::string> words;
  size_t pos = 0;
  while (pos < command.size()) {
    size_t end = command.find(' ', pos);
    if (end == std::string::npos) end = command.size();
    if (end > pos) words.push_back(command.substr(pos, end - pos));
    pos = end + 1;
  }
  words.insert(words.end(), {key.option, key.file.string(), dir.string()});
  return words;
}

class EnvelopectlCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* given = std::getenv("ENVELOPEFS_CRASH_SEED");
    seed_ = given != nullptr ? static_cast<uint32_t>(std::strtoul(given, nullptr, 10))
                             : static_cast<uint32_t>(std::random_device{}());
    rng_.seed(seed_);
    std::printf("ENVELOPEFS_CRASH_SEED=%u\n", seed_);
    const char* rounds = std::getenv("ENVELOPEFS_CRASH_ROUNDS");
    rounds_ = rounds != nullptr ? std::max(1, std::atoi(rounds)) : kDefaultRounds;
    ASSERT_TRUE(v_.mounted()) << v_.DaemonLog();
    std::mt19937 content(seed_);
    for (int i = 0; i < kFiles; ++i) {
      const std::string dir = "d" + std::to_string(i % 7);
      const std::string name = dir + "/file" + std::to_string(i);
      files_[name] = RandomString(content() % (3 * kChunk), static_cast<uint32_t>(content()));
      fs::create_directories(v_ / dir);
      WriteFile(v_ / name, files_[name]);
    }
    v_.Unmount();
    key_ = {"--keyfile", v_.keyfile()};
    WriteSecretFile(v_.cipher().parent_path() / "pass", "crash test passphrase\n");
    pass_ = {"--passfile", v_.cipher().parent_path() / "pass"};
  }

  std::string Ctl(const std::string& args, const Key& key) const {
    return "ENVELOPEFS_TEST_FAST_KDF=1 " + kCtl + " " + args + " " + key.Flags() + " " +
           Quote(v_.cipher());
  }
  bool Opens(const Key& key) const {
    return RunCommand(Ctl("keys list --json", key)).exit_code == 0;
  }
  std::string Trace(const std::string& what, int round) const {
    return what + " round " + std::to_string(round) +
           " (ENVELOPEFS_CRASH_SEED=" + std::to_string(seed_) + ")";
  }

  // Kills `command` (envelopectl words before the key and the cipher dir) at a seeded moment
  // and checks the volume; returns true if the kill landed mid-way.
  bool KillAndCheck(const std::string& command, const Key& key,
                    std::chrono::microseconds* typical) {
    // Up to 1.3 times the command's usual run time, the first tenth of it in fine steps.
    const int64_t span = std::max<int64_t>(typical->count() * 13 / 10, 2000);
    const auto delay = std::chrono::microseconds(
        rng_() % 4 == 0 ? rng_() % std::max<int64_t>(span / 10, 1) : rng_() % span);
    std::chrono::microseconds ran{};
    const bool killed = KilledAfter(Words(command, key, v_.cipher()), delay, &ran);
    if (!killed) *typical = ran;  // the latest uninterrupted run time
    return killed;
  }

  // The volume opens with `key` and not with `other` (if given), mounts, reads back exactly,
  // verifies and audits clean.
  void CheckVolume(const Key& key, const Key* other, const std::string& trace) {
    SCOPED_TRACE(trace);
    ASSERT_TRUE(Opens(key)) << "the volume opens with neither key state";
    if (other != nullptr) {
      EXPECT_FALSE(Opens(*other)) << "both the old and the new key open it";
    }
    CommandResult verify = RunCommand(Ctl("verify --json", key));
    EXPECT_EQ(0, verify.exit_code) << verify.output;
    CommandResult audit = RunCommand(Ctl("audit --json", key));
    EXPECT_EQ(0, audit.exit_code) << audit.output;
    v_.set_key_flags(key.option == "--keyfile" ? "" : key.Flags());
    v_.Mount();
    ASSERT_TRUE(v_.mounted()) << v_.DaemonLog();
    size_t wrong = 0;
    for (const auto& [name, content] : files_) {
      if (ReadFile(v_ / name) != content) ++wrong;
    }
    EXPECT_EQ(0u, wrong) << "files that do not read back exactly\n" << v_.DaemonLog();
    EXPECT_EQ(files_.size(), FilesBelow(v_.mnt()).size());
    v_.Unmount();
  }

  json Keys() const {
    return json::parse(RunCommand(Ctl("keys list --json", key_)).output)["keys"];
  }
  // The volume's cipher files (everything but the volume's own files).
  std::vector<fs::path> CipherFiles() const {
    std::vector<fs::path> files;
    for (const fs::path& p : FilesBelow(v_.cipher())) {
      const std::string name = p.filename().string();
      if (name.rfind("envelopefs", 0) != 0 && name.rfind(".envelopefs", 0) != 0) {
        files.push_back(p);
      }
    }
    return files;
  }

  // Runs `command` to completion; a keyring change also removes the copies of the keyring that
  // killed changes left behind (".envelopefs.tmp.*" at the root).
  void RunAgain(const std::string& command, const Key& key, const std::string& trace) {
    CommandResult again = RunCommand(Ctl(command, key));
    ASSERT_EQ(0, again.exit_code) << trace << "\n" << again.output;
    if (command.rfind("keys ", 0) != 0) return;
    for (const auto& e : fs::directory_iterator(v_.cipher())) {
      if (e.path().filename().string().rfind(".envelopefs.tmp.", 0) == 0) {
        EXPECT_NE(0u, ReadFile(e.path()).rfind("# envelopefs keyring", 0))
            << trace << ": a copy of the keyring is left behind: " << e.path();
      }
    }
  }

  MountedVolume v_{VolumeOptions{"--chunk-size 4096", ""}};
  std::map<std::string, std::string> files_;
  uint32_t seed_ = 0;
  int rounds_ = kDefaultRounds;
  std::mt19937 rng_;
  Key key_, pass_;
};

TEST_F(EnvelopectlCrash, KilledRotateRewrapAndRetireLeaveAWorkingVolume) {
  std::chrono::microseconds rotate{20000}, rewrap{100000}, retire{40000};
  int killed = 0;
  uint32_t version = 1;  // the active version, once each round's commands have completed
  for (int round = 0; round < rounds_; ++round) {
    // keys rotate: the old keyring or the new one, with one more version
    const size_t before = Keys().size();
    killed += KillAndCheck("keys rotate", key_, &rotate);
    const size_t after = Keys().size();
    EXPECT_TRUE(after == before || after == before + 1) << Trace("rotate", round) << ": " << after;
    CheckVolume(key_, nullptr, Trace("rotate", round));
    RunAgain("keys rotate", key_, Trace("rotate", round));
    const json keys = Keys();
    version = 0;
    for (const json& k : keys) version = std::max(version, k["version"].get<uint32_t>());
    // rewrap to the new version; once run again, every file is on it
    killed += KillAndCheck("rewrap --jobs 2", key_, &rewrap);
    CheckVolume(key_, nullptr, Trace("rewrap", round));
    RunAgain("rewrap", key_, Trace("rewrap", round));
    size_t behind = 0;
    for (const fs::path& p : CipherFiles()) behind += !BothSlotsOn(p, version);
    EXPECT_EQ(0u, behind) << Trace("rewrap", round);
    // keys retire of every older version still holding a key
    for (const json& k : keys) {
      const uint32_t old = k["version"].get<uint32_t>();
      if (old == version || k["state"] == "retired") continue;
      const std::string command = "keys retire --kek-version " + std::to_string(old);
      killed += KillAndCheck(command, key_, &retire);
      CheckVolume(key_, nullptr, Trace("retire", round));
      RunAgain(command, key_, Trace("retire", round));
      for (const json& now : Keys()) {
        if (now["version"] == old) {
          EXPECT_EQ("retired", now["state"]) << Trace("retire", round);
        }
      }
    }
    if (HasFatalFailure()) return;
  }
  std::printf("seed %u: %d kills landed mid-command\n", seed_, killed);
  RecordProperty("killed_mid_command", killed);
}

TEST_F(EnvelopectlCrash, KilledChangeMasterLeavesExactlyOneKeyThatOpensTheVolume) {
  std::chrono::microseconds change{30000};
  Key current = key_;
  int killed = 0;
  for (int round = 0; round < 2 * rounds_; ++round) {
    const Key& next = current.option == "--keyfile" ? pass_ : key_;
    const std::string command =
        std::string("keys change-master ") +
        (next.option == "--keyfile" ? "--new-keyfile " : "--new-passfile ") + next.file.string();
    killed += KillAndCheck(command, current, &change);
    const bool changed = Opens(next);
    const Key now = changed ? next : current;
    const Key before = current;
    CheckVolume(now, changed ? &before : &next, Trace("change-master", round));
    if (!changed) RunAgain(command, current, Trace("change-master", round));
    ASSERT_TRUE(Opens(next)) << Trace("change-master", round);
    current = next;
  }
  std::printf("seed %u: %d kills landed mid-command\n", seed_, killed);
  RecordProperty("killed_mid_command", killed);
}

// Mounted and in use: a writer creates and fsyncs files through the mount while rotate and
// rewrap are killed (both are documented as safe on a mounted volume). After a clean unmount
// every file written, the earlier ones and the new ones, verifies and reads back exactly.
TEST_F(EnvelopectlCrash, KilledWhileTheVolumeIsMountedAndWrittenLosesNothing) {
  std::chrono::microseconds rotate{20000}, rewrap{100000};
  int killed = 0;
  std::mutex mu;
  std::map<std::string, std::string> written;  // fsynced through the mount
  for (int round = 0; round < rounds_; ++round) {
    v_.set_key_flags("");
    v_.Mount();
    ASSERT_TRUE(v_.mounted()) << v_.DaemonLog();
    std::atomic<bool> stop{false};
    std::thread writer([&, round] {
      std::mt19937 rng(seed_ + static_cast<uint32_t>(round));
      for (int i = 0; !stop; ++i) {
        const std::string name = "w" + std::to_string(round) + "-" + std::to_string(i);
        const std::string data = RandomString(1 + rng() % (3 * kChunk), rng());
        int fd = open((v_ / name).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
        if (fd < 0) return;
        const bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                        fsync(fd) == 0;
        close(fd);
        if (!ok) return;
        std::lock_guard<std::mutex> lock(mu);
        written[name] = data;
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 200));
    killed += KillAndCheck("keys rotate", key_, &rotate);
    RunAgain("keys rotate", key_, Trace("mounted rotate", round));
    killed += KillAndCheck("rewrap --jobs 2", key_, &rewrap);
    stop = true;
    writer.join();
    v_.Unmount();
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [name, data] : written) files_[name] = data;
    }
    CheckVolume(key_, nullptr, Trace("mounted rewrap", round));
    RunAgain("rewrap", key_, Trace("mounted rewrap", round));
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(written.size(), static_cast<size_t>(rounds_));
  std::printf("seed %u: %d kills landed mid-command, %zu files written meanwhile\n", seed_, killed,
              written.size());
}

}  // namespace
}  // namespace envelopefs::testing
