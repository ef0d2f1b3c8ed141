#include "mount_fixture.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

namespace envelopefs::testing {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;
constexpr int kWatchdogSeconds = 240;
constexpr unsigned kAsNobodySeconds = 60;  // AsNobody's child is killed after this long

}  // namespace

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

CommandResult RunCommand(const std::string& command, int timeout_seconds) {
  std::string full =
      "timeout -k 5 " + std::to_string(timeout_seconds) + " sh -c " + Quote(command) + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("write failed: " + path.string());
}

void WriteSecretFile(const fs::path& path, const std::string& content) {
  WriteFile(path, content);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
}

std::string RandomString(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::vector<uint8_t> ReadBytes(const fs::path& path) {
  std::string s = ReadFile(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

void WriteBytesAt(const fs::path& path, uint64_t offset, const std::vector<uint8_t>& bytes) {
  int fd = open(path.c_str(), O_WRONLY);
  if (fd < 0) throw std::runtime_error("open failed: " + path.string());
  ssize_t n = pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
  close(fd);
  if (n != static_cast<ssize_t>(bytes.size())) throw std::runtime_error("pwrite failed");
}

std::vector<fs::path> FilesBelow(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file(ec) && !e.is_symlink()) out.push_back(e.path());
  }
  return out;
}

std::map<std::string, std::string> UserXattrs(const fs::path& path) {
  std::map<std::string, std::string> out;
  char names[4096];
  ssize_t n = llistxattr(path.c_str(), names, sizeof names);
  if (n < 0) ADD_FAILURE() << "llistxattr " << path << ": " << std::strerror(errno);
  for (ssize_t i = 0; i < n;) {
    std::string name(names + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.rfind("user.", 0) != 0) continue;
    char value[4096];
    ssize_t m = lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
    if (m >= 0) out[name] = std::string(value, static_cast<size_t>(m));
  }
  return out;
}

bool IsFuseMount(const fs::path& path) {
  struct statfs sf;
  if (statfs(path.c_str(), &sf) == 0) return sf.f_type == kFuseSuperMagic;
  return errno == ENOTCONN;  // the mount of a daemon that died
}

size_t DescriptorsOf(pid_t pid) {
  size_t fds = 0;
  for (auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)e;
    ++fds;
  }
  return fds;
}

MountedVolume::MountedVolume(const VolumeOptions& options) : options_(options) {
  cipher_ = root_.path() / "cipher";
  mnt_ = root_.path() / "mnt";
  keyfile_ = root_.path() / "key";
  log_ = root_.path() / "daemon.log";
  fs::create_directories(mnt_);
  CommandResult key = RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(keyfile_));
  if (key.exit_code != 0) throw std::runtime_error("cannot make a key file");
  CommandResult init = RunCommand(std::string(ENVELOPECTL_BINARY) + " init " + KeyFlags() + " " +
                                  options_.init_flags + " " + Quote(cipher_));
  if (init.exit_code != 0) throw std::runtime_error("envelopectl init failed: " + init.output);
  watchdog_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, std::chrono::seconds(kWatchdogSeconds), [this] { return done_; })) {
      std::fprintf(stderr, "watchdog: test ran past %d s; unmounting and aborting\n",
                   kWatchdogSeconds);
      RunCommand("fusermount3 -uz " + Quote(mnt_));
      if (pid_ > 0) kill(pid_, SIGKILL);
      std::abort();
    }
  });
  Mount();
}

MountedVolume::~MountedVolume() {
  Unmount();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
}

std::string MountedVolume::KeyFlags() const {
  return options_.key_flags.empty() ? "--keyfile " + Quote(keyfile_) : options_.key_flags;
}

void MountedVolume::Mount() {
  ASSERT_LT(pid_, 0) << "already mounted";
  // Everything the child needs is made before fork: this process has other threads (the
  // watchdog), so the child may only make async-signal-safe calls. An allocation there can wait
  // forever on an allocator lock another thread held at fork (seen with ASan: a child spinning).
  // ENVELOPEFS_TEST_DAEMON_WRAPPER runs the daemon under a tool, e.g. "valgrind -q";
  // ENVELOPEFS_TEST_DAEMON is another build of it (the ThreadSanitizer one, scripts/test).
  const char* wrapper = getenv("ENVELOPEFS_TEST_DAEMON_WRAPPER");
  const char* daemon = getenv("ENVELOPEFS_TEST_DAEMON");
  const std::string cmd = std::string("exec ") + (wrapper ? std::string(wrapper) + " " : "") +
                          (daemon ? Quote(daemon) : std::string(ENVELOPEFS_BINARY)) +
                          " -f --seal-interval 1 " + KeyFlags() + " " + options_.mount_flags + " " +
                          Quote(cipher_) + " " + Quote(mnt_);
  const std::string log = log_.string();
  const struct rlimit limit = {options_.max_descriptors, options_.max_descriptors};
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (limit.rlim_cur != 0 && setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    if (IsFuseMount(mnt_)) return;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "envelopefs exited before mounting: " << DaemonLog();
    }
    usleep(50 * 1000);
  }
  // For the next reader of a CI log: where each of the daemon's threads waits.
  std::string where;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
    std::ifstream wchan(task.path() / "wchan"), stack(task.path() / "stack");
    std::string w((std::istreambuf_iterator<char>(wchan)), std::istreambuf_iterator<char>());
    std::string k((std::istreambuf_iterator<char>(stack)), std::istreambuf_iterator<char>());
    where += "\n  thread " + task.path().filename().string() + " waits in " + w + "\n" + k;
  }
  // Not mounted: stop the daemon so that mounted() is false and ASSERT_MOUNTED stops the test
  // (a mount that appears just now is detached; it is ours).
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  if (IsFuseMount(mnt_)) RunCommand("fusermount3 -uz " + Quote(mnt_));
  FAIL() << "mount did not appear within 10 s (daemon killed): " << DaemonLog() << where;
}

void MountedVolume::Unmount() {
  if (pid_ <= 0) {
    if (IsFuseMount(mnt_)) RunCommand("fusermount3 -uz " + Quote(mnt_));
    return;
  }
  RunCommand("fusermount3 -u " + Quote(mnt_), 30);
  for (int i = 0; i < 300; ++i) {  // up to 30 s for the daemon to seal and exit
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ExpectNoSanitizerReport();
      return;
    }
    if (i == 100) RunCommand("fusermount3 -uz " + Quote(mnt_));  // busy: detach lazily
    usleep(100 * 1000);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  RunCommand("fusermount3 -uz " + Quote(mnt_));
  ADD_FAILURE() << "the daemon did not exit after unmount";
}

int MountedVolume::Stop(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  for (int i = 0; i < 300; ++i) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    usleep(100 * 1000);
  }
  Unmount();  // kills it and reports the failure
  return -1;
}

std::string MountedVolume::DaemonLog() const { return ReadFile(log_); }

void MountedVolume::ExpectNoSanitizerReport() const {
  const std::string log = DaemonLog();
  for (const char* report : {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                             "ERROR: LeakSanitizer", "runtime error:"}) {
    EXPECT_FALSE(Contains(log, report)) << "the daemon's sanitizer reported:\n" << log;
  }
}

fs::path CipherOf(const MountedVolume& v, const fs::path& plain) {
  struct stat st;
  if (stat(plain.c_str(), &st) != 0) return {};
  for (const fs::path& p : FilesBelow(v.cipher())) {
    struct stat cs;
    if (stat(p.c_str(), &cs) == 0 && cs.st_ino == st.st_ino) return p;
  }
  return {};
}

int AsNobody(const fs::path& dir, int (*body)()) {
  // Prepared before fork: the child of this multi-threaded process makes only async-signal-safe
  // calls (no allocation: see Mount). The ids change through the bare system calls: setgroups is
  // not async-signal-safe, and glibc's set*id wrappers take process-wide locks to change every
  // thread's ids; the system calls change only the calling thread's, the child's only thread.
  const std::string where = dir.string();
  sigset_t alarm_only;
  sigemptyset(&alarm_only);
  sigaddset(&alarm_only, SIGALRM);
  pid_t pid = fork();
  if (pid == 0) {
    sigprocmask(SIG_UNBLOCK, &alarm_only, nullptr);
    signal(SIGALRM, SIG_DFL);
    alarm(kAsNobodySeconds);  // a hung file system kills the child, not the test
    if (chdir(where.c_str()) != 0 || syscall(SYS_setgroups, 0, nullptr) != 0 ||
        syscall(SYS_setgid, 65534) != 0 || syscall(SYS_setuid, 65534) != 0) {
      _exit(100);
    }
    _exit(body());
  }
  if (pid < 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

size_t LineCount(const std::string& text) {
  size_t n = 0;
  for (size_t at = 0; at < text.size(); ++n) {
    size_t end = text.find('\n', at);
    at = end == std::string::npos ? text.size() : end + 1;
  }
  return n;
}

}  // namespace envelopefs::testing
