// The master key from a command's standard output (--master-command CMD), e.g. a cloud KMS CLI
// or `gpg --decrypt key.gpg`. The command runs with /bin/sh -c in a new session (no controlling
// terminal), standard input /dev/null, no other inherited descriptor, and a timeout (30 s,
// ENVELOPEFS_MASTER_COMMAND_TIMEOUT seconds); its whole process group is killed when the time is
// up or it prints too much. Standard output must be 32 raw bytes or 64 hex digits, either
// optionally followed by one newline; it is read into locked memory. The last line of its
// standard error explains a failure. The command string is not stored in the volume. Thread-safe
// (each call runs the command anew).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

constexpr int kDefaultTimeoutSeconds = 30;
constexpr int kMaxTimeoutSeconds = 3600;
constexpr size_t kMaxOutput = 2 * kKeySize + 1;  // 64 hex digits and a newline
constexpr size_t kMaxStderr = 4096;              // kept for the message's last line

int TimeoutSeconds() {
  const char* env = std::getenv("ENVELOPEFS_MASTER_COMMAND_TIMEOUT");
  if (env == nullptr || *env == '\0') return kDefaultTimeoutSeconds;
  char* end = nullptr;
  long v = std::strtol(env, &end, 10);
  if (*end != '\0' || v < 1 || v > kMaxTimeoutSeconds) {
    throw Error(ErrorKind::kUsage, "ENVELOPEFS_MASTER_COMMAND_TIMEOUT must be 1 to 3600 seconds");
  }
  return static_cast<int>(v);
}

int64_t NowMillis() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

int HexDigit(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The key in `out` (`len` bytes of it): 32 raw bytes or 64 hex digits, either optionally
// followed by "\n". Throws Error(kUsage) otherwise, never showing the bytes.
SecureBytes KeyFromOutput(const SecureBytes& out, size_t len) {
  if ((len == kKeySize + 1 || len == 2 * kKeySize + 1) && out.data()[len - 1] == '\n') --len;
  if (len == kKeySize) return SecureBytes::Copy(out.span().first(len));
  if (len == 2 * kKeySize) {
    SecureBytes key(kKeySize);
    for (size_t i = 0; i < kKeySize; ++i) {
      int hi = HexDigit(out.data()[2 * i]), lo = HexDigit(out.data()[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        throw Error(ErrorKind::kUsage,
                    "the master command printed 64 bytes that are not hex digits (it must print "
                    "32 raw bytes or 64 hex digits)");
      }
      key.data()[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    return key;
  }
  throw Error(ErrorKind::kUsage, "the master command printed " +
                                     (len > kMaxOutput ? "more than " + std::to_string(kMaxOutput)
                                                       : std::to_string(len)) +
                                     " bytes (it must print 32 raw bytes or 64 hex digits)");
}

// The last non-empty line of `text`, with control characters replaced, at most 200 bytes.
std::string LastLine(const std::string& text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r')) --end;
  size_t start = text.rfind('\n', end == 0 ? 0 : end - 1);
  start = start == std::string::npos || end == 0 ? 0 : start + 1;
  std::string line = text.substr(start, std::min<size_t>(end - start, 200));
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return line;
}

[[noreturn]] void ChildExec(const std::string& command, int out_fd, int err_fd) {
  ::setsid();  // no controlling terminal; the process group we kill
  int null = ::open("/dev/null", O_RDONLY);
  if (null < 0 || ::dup2(null, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
      ::dup2(err_fd, STDERR_FILENO) < 0) {
    ::_exit(127);
  }
  ::close_range(3, ~0U, 0);
  ::signal(SIGPIPE, SIG_DFL);
  ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
  ::_exit(127);
}

class CommandSource : public MasterKeySource {
 public:
  explicit CommandSource(std::string command) : command_(std::move(command)) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kCommand; }
  MasterKeyParams NewParams(const VolumeId&) const override {
    MasterKeyParams params;
    params.kind = MasterKeyKind::kCommand;
    return params;
  }
  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId&) const override {
    if (params.kind != MasterKeyKind::kCommand) throw WrongSourceError(params);
    return Run();
  }

 private:
  SecureBytes Run() const {
    const int timeout = TimeoutSeconds();
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) ThrowSystemError("cannot run the master command");
    UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) ThrowSystemError("cannot run the master command");
    UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
    pid_t pid = ::fork();
    if (pid < 0) ThrowSystemError("cannot run the master command");
    if (pid == 0) ChildExec(command_, out_w.get(), err_w.get());
    out_w.reset();
    err_w.reset();

    SecureBytes out(kMaxOutput + 1);
    size_t got = 0;
    std::string err;
    const int64_t deadline = NowMillis() + int64_t{timeout} * 1000;
    std::string failure;
    bool out_open = true, err_open = true;
    while ((out_open || err_open) && failure.empty()) {
      const int64_t left = deadline - NowMillis();
      if (left <= 0) {
        failure = "the master command did not finish within " + std::to_string(timeout) +
                  " s (ENVELOPEFS_MASTER_COMMAND_TIMEOUT)";
        break;
      }
      struct pollfd fds[2] = {{out_open ? out_r.get() : -1, POLLIN, 0},
                              {err_open ? err_r.get() : -1, POLLIN, 0}};
      int n = ::poll(fds, 2, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failure = "cannot wait for the master command";
        break;
      }
      if (out_open && fds[0].revents != 0) {
        ssize_t r = ::read(out_r.get(), out.data() + got, out.size() - got);
        if (r > 0) got += static_cast<size_t>(r);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) out_open = false;
        if (got > kMaxOutput) break;  // too much: KeyFromOutput says so
      }
      if (err_open && fds[1].revents != 0) {
        char buf[512];
        ssize_t r = ::read(err_r.get(), buf, sizeof buf);
        if (r > 0) err.append(buf, static_cast<size_t>(r));
        if (err.size() > kMaxStderr) err.erase(0, err.size() - kMaxStderr);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) err_open = false;
      }
    }
    int status = 0;
    bool cut_short = !failure.empty() || out_open || err_open;
    // Both pipes closed: the shell may still run (it closed them itself); wait until the
    // deadline for it to exit.
    while (!cut_short) {
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) break;
      if (NowMillis() >= deadline) {
        failure = "the master command did not finish within " + std::to_string(timeout) +
                  " s (ENVELOPEFS_MASTER_COMMAND_TIMEOUT)";
        cut_short = true;
        break;
      }
      ::usleep(5000);
    }
    if (cut_short) {
      ::kill(-pid, SIGKILL);  // the shell and everything it started (its group, from setsid)
      ::kill(pid, SIGKILL);   // in case it was stopped before setsid
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (!failure.empty()) throw Error(ErrorKind::kIo, failure);
    if (got <= kMaxOutput && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      std::string why = WIFEXITED(status)
                            ? "exited with status " + std::to_string(WEXITSTATUS(status))
                            : "was killed by signal " + std::to_string(WTERMSIG(status));
      const std::string last = LastLine(err);
      throw Error(ErrorKind::kIo, "the master command " + why + (last.empty() ? "" : ": " + last));
    }
    return KeyFromOutput(out, got);
  }

  std::string command_;
};

}  // namespace

std::unique_ptr<MasterKeySource> MakeCommandSource(const std::string& command) {
  return std::make_unique<CommandSource>(command);
}

}  // namespace envelopefs
