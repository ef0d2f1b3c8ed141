// envelopectl quiesce CIPHERDIR [--timeout SECONDS] -- COMMAND [ARGS...]: runs COMMAND (a backup
// of the cipher dir) while the daemon serving the volume holds every change and has sealed and
// synced every file, so that the copy is consistent. See control_socket.h for the protocol.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"
#include "common.h"
#include "envelopefs/control_socket_path.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume_config.h"

namespace envelopefs::cli {
namespace {

constexpr uint32_t kDefaultTimeoutSeconds = 3600;

// Connects to the daemon of volume `id`; an invalid fd if no daemon answers.
UniqueFd ConnectToDaemon(const VolumeId& id, std::string* path) {
  auto socket_path = ControlSocketPath(id);
  if (!socket_path) return UniqueFd();
  *path = *socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path->size() >= sizeof addr.sun_path) return UniqueFd();
  std::memcpy(addr.sun_path, path->c_str(), path->size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return UniqueFd();
  }
  return fd;
}

// One reply line from the daemon (without the newline); "" if it closed the connection.
std::string ReadReply(int fd) {
  std::string line;
  char c;
  while (line.size() < 4096) {
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  return line;
}

void Send(int fd, const std::string& text) {
  if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    throw Error(ErrorKind::kIo,
                std::string("the daemon's control socket: ") + std::strerror(errno));
  }
}

// Runs `command` and returns its exit code as a shell would (128 + signal).
int RunCommandLine(const std::vector<std::string>& command) {
  std::vector<char*> argv;
  for (const auto& w : command) argv.push_back(const_cast<char*>(w.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw Error(ErrorKind::kIo, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "envelopectl: cannot run %s: %s\n", argv[0], std::strerror(errno));
    std::_Exit(127);
  }
  // Like a shell: ^C goes to the command; we wait for it and then release the hold.
  struct sigaction ignore {
  }, old_int{}, old_quit{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int RunQuiesce(const Args& args) {
  constexpr char kUsage[] = "quiesce CIPHERDIR [--timeout SECONDS] -- COMMAND [ARGS...]";
  ExpectArgs(args, 1, 1, kUsage);
  if (!args.has_command || args.command.empty()) {
    throw Error(ErrorKind::kUsage,
                std::string("give the command to run after --: envelopectl ") + kUsage);
  }
  const std::filesystem::path dir = args.words[1];
  UniqueFd root = OpenRoot(dir);
  const VolumeConfig config = VolumeConfig::LoadAt(root.get(), dir);
  root.reset();
  const uint32_t timeout = args.timeout_seconds.value_or(kDefaultTimeoutSeconds);

  std::string path;
  UniqueFd daemon = ConnectToDaemon(config.volume_id, &path);
  if (daemon.get() < 0) {
    if (!args.quiet) {
      std::fprintf(stderr,
                   "envelopectl: no daemon serves %s%s%s: nothing to hold; running the command\n",
                   dir.c_str(), path.empty() ? "" : " (no answer at ", path.empty() ? "" : ")");
    }
    return RunCommandLine(args.command);
  }
  Send(daemon.get(), "quiesce " + std::to_string(timeout) + "\n");
  const std::string held = ReadReply(daemon.get());
  if (held != "held") {
    const std::string why = held.rfind("error ", 0) == 0 ? held.substr(6) : "no answer";
    throw Error(ErrorKind::kState, "the daemon did not hold changes to " + dir.string() + ": " +
                                       why + " (nothing was run)");
  }
  if (!args.quiet) {
    std::fprintf(stderr, "envelopectl: changes to %s held (for up to %u s); running the command\n",
                 dir.c_str(), timeout);
  }
  const int rc = RunCommandLine(args.command);
  Send(daemon.get(), "release\n");
  const std::string released = ReadReply(daemon.get());
  if (released == "expired") {
    throw Error(ErrorKind::kState, "the hold expired after " + std::to_string(timeout) +
                                       " s, before the command finished: the copy may be "
                                       "inconsistent (give a longer --timeout)");
  }
  if (released != "released") {
    throw Error(ErrorKind::kIo,
                "the daemon did not confirm the hold (it may have stopped): the "
                "copy may be inconsistent");
  }
  return rc;
}

}  // namespace envelopefs::cli
