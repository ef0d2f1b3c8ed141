// Test support for mounted integration tests: temp dirs (TempDir, from common/temp_dir.h),
// running the programs, and a real FUSE mount of a fresh volume that is always unmounted in
// teardown.
//
// MountedVolume starts `envelopefs -f` as a child process and waits until the mount point is a
// FUSE mount. Its destructor unmounts (fusermount3 -u, then -uz) and reaps the daemon, so a
// failing test never leaves a mount behind. A watchdog lazily unmounts and kills the daemon if a
// test runs past its deadline, so a hung file system makes the test fail instead of hanging.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.h"

// Fails the test, showing the daemon's log, unless MountedVolume `v` is mounted.
#define ASSERT_MOUNTED(v) ASSERT_TRUE((v).mounted()) << (v).DaemonLog()

namespace envelopefs::testing {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a command line through /bin/sh with a timeout; captures its output.
CommandResult RunCommand(const std::string& command, int timeout_seconds = 60);

std::string Quote(const std::string& s);
std::string ReadFile(const fs::path& path);
void WriteFile(const fs::path& path, const std::string& content);
// A key or passphrase file: written with mode 0600, as envelopefs requires.
void WriteSecretFile(const fs::path& path, const std::string& content);
std::string RandomString(size_t n, uint32_t seed);
bool Contains(const std::string& text, const std::string& part);
size_t LineCount(const std::string& text);  // lines, the last one counted without its newline
std::vector<uint8_t> ReadBytes(const fs::path& path);
void WriteBytesAt(const fs::path& path, uint64_t offset, const std::vector<uint8_t>& bytes);

// Every regular file below `dir`, recursively.
std::vector<fs::path> FilesBelow(const fs::path& dir);

// The user.* extended attributes of `path` (not following a symlink), name -> value; an
// attribute whose value cannot be read is left out.
std::map<std::string, std::string> UserXattrs(const fs::path& path);

struct VolumeOptions {
  std::string init_flags;      // extra flags for envelopectl init
  std::string mount_flags;     // extra flags for envelopefs
  std::string key_flags = {};  // the key options of init and mount; empty: --keyfile keyfile()
  // If not 0, the daemon starts with RLIMIT_NOFILE this low (soft and hard).
  unsigned long max_descriptors = 0;
};

class MountedVolume {
 public:
  explicit MountedVolume(const VolumeOptions& options = {});
  ~MountedVolume();

  const fs::path& cipher() const { return cipher_; }
  const fs::path& mnt() const { return mnt_; }
  const fs::path& keyfile() const { return keyfile_; }
  fs::path operator/(const std::string& rel) const { return mnt_ / rel; }

  void Mount();  // asserts success
  void set_mount_flags(const std::string& flags) { options_.mount_flags = flags; }
  void set_key_flags(const std::string& flags) { options_.key_flags = flags; }
  void Unmount();  // idempotent; waits for the daemon to exit (it seals everything first)
  // Sends `signal` to the daemon and waits up to 30 s for it to exit; returns its exit status
  // (128 + N if killed by signal N, -1 if it did not exit and was killed).
  int Stop(int signal);
  bool mounted() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // the daemon
  std::string DaemonLog() const;      // the daemon's stderr so far
  // Fails the test if the daemon's sanitizer (a sanitizer build, ENVELOPEFS_TEST_DAEMON) reported
  // anything; Unmount checks it.
  void ExpectNoSanitizerReport() const;

 private:
  std::string KeyFlags() const;

  TempDir root_;
  fs::path cipher_, mnt_, keyfile_, log_;
  VolumeOptions options_;
  pid_t pid_ = -1;
  std::thread watchdog_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
};

bool IsFuseMount(const fs::path& path);

// How many descriptors process `pid` (e.g. a daemon) holds.
size_t DescriptorsOf(pid_t pid);

// Runs `body` in a forked child process as uid/gid 65534 (nobody, no supplementary groups) with
// its working directory at `dir`; returns the child's exit code (the body's return value), or
// -1 if it did not exit (it is killed after 60 s). The test process has other threads, so `body`
// may make only async-signal-safe calls (open, read, write, chmod, ...: no allocation, no gtest
// assertions); a plain function, e.g. a lambda without captures.
int AsNobody(const fs::path& dir, int (*body)());

// The cipher file behind plaintext file `plain` of a mounted volume (same inode number), or an
// empty path.
fs::path CipherOf(const MountedVolume& v, const fs::path& plain);

}  // namespace envelopefs::testing
