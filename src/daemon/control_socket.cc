#include "control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "envelope_fs.h"
#include "envelopefs/control_socket_path.h"
#include "envelopefs/log.h"

namespace envelopefs {
namespace {

constexpr int kRequestWaitMs = 10'000;                     // for the request line after connecting
constexpr auto kHoldWaitLimit = std::chrono::seconds(30);  // for changes in progress to finish
constexpr long kMaxHoldSeconds = 7 * 24 * 3600;

// The runtime directory, made 0700 if missing; refused unless it is a real directory of ours
// that no one else can enter.
bool SafeRuntimeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    Log(LogLevel::kWarning,
        "no control socket (envelopectl quiesce): mkdir " + dir + ": " + std::strerror(errno));
    return false;
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & 077) != 0) {
    Log(LogLevel::kWarning, "no control socket (envelopectl quiesce): " + dir +
                                " is not a directory of this user with mode 0700");
    return false;
  }
  return true;
}

bool FillAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

bool SendAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::unique_ptr<ControlSocket> ControlSocket::Start(EnvelopeFs& fs) {
  auto dir = ControlRuntimeDir();
  auto path = ControlSocketPath(fs.volume().config().volume_id);
  if (!dir || !path) {
    Log(LogLevel::kInfo,
        "no control socket (envelopectl quiesce): no runtime directory "
        "($XDG_RUNTIME_DIR)");
    return nullptr;
  }
  if (!SafeRuntimeDir(*dir)) return nullptr;
  sockaddr_un addr;
  if (!FillAddress(*path, &addr)) {
    Log(LogLevel::kWarning, "no control socket: the path " + *path + " is too long");
    return nullptr;
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (probe.get() >= 0 &&
      ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    Log(LogLevel::kWarning, "no control socket: another daemon serves a volume with this id at " +
                                *path + " (a copy of this volume mounted elsewhere?)");
    return nullptr;
  }
  ::unlink(path->c_str());  // left by a daemon that did not stop cleanly
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0 ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path->c_str(), 0600) != 0 || ::listen(listener.get(), 4) != 0) {
    Log(LogLevel::kWarning, "no control socket at " + *path + ": " + std::strerror(errno));
    return nullptr;
  }
  std::unique_ptr<ControlSocket> socket(new ControlSocket(fs, *path, std::move(listener)));
  socket->thread_ = std::thread([s = socket.get()] { s->Run(); });
  return socket;
}

ControlSocket::ControlSocket(EnvelopeFs& fs, std::string path, UniqueFd listener)
    : fs_(fs), path_(std::move(path)), listener_(std::move(listener)) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) ThrowSystemError("pipe");
  stop_read_ = UniqueFd(p[0]);
  stop_write_ = UniqueFd(p[1]);
}

ControlSocket::~ControlSocket() {
  (void)!::write(stop_write_.get(), "x", 1);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

bool ControlSocket::WaitReadable(int fd, int ms, bool* timed_out) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
  if (timed_out != nullptr) *timed_out = false;
  for (;;) {
    int n = ::poll(fds, 2, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && timed_out != nullptr) *timed_out = true;
    return n > 0 && fds[1].revents == 0 && fds[0].revents != 0;
  }
}

void ControlSocket::Run() {
  while (WaitReadable(listener_.get(), -1, nullptr)) {
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client.get() >= 0) Serve(client.get());
  }
}

void ControlSocket::Serve(int client) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
      (peer.uid != 0 && peer.uid != ::geteuid())) {
    SendAll(client, "error only root and the daemon's user may quiesce the volume\n");
    return;
  }
  char line[128] = {};
  ssize_t n = 0;
  if (WaitReadable(client, kRequestWaitMs, nullptr)) n = ::recv(client, line, sizeof line - 1, 0);
  char* end = nullptr;
  const long seconds =
      n > 8 && std::strncmp(line, "quiesce ", 8) == 0 ? std::strtol(line + 8, &end, 10) : 0;
  if (seconds < 1 || seconds > kMaxHoldSeconds || end == nullptr || (*end != '\n' && *end != 0)) {
    SendAll(client, "error unknown request\n");
    return;
  }
  if (int err = fs_.Quiesce(kHoldWaitLimit)) {
    SendAll(client, std::string("error ") + std::strerror(err) + "\n");
    return;
  }
  Log(LogLevel::kInfo, "changes held for a backup (envelopectl quiesce), for up to " +
                           std::to_string(seconds) + " s");
  if (!SendAll(client, "held\n")) {
    fs_.Unquiesce();
    return;
  }
  bool expired = false;
  WaitReadable(client, static_cast<int>(seconds * 1000), &expired);
  fs_.Unquiesce();
  if (expired) {
    Log(LogLevel::kWarning, "the hold for a backup expired after " + std::to_string(seconds) +
                                " s: changes go on; the copy may be inconsistent");
    if (WaitReadable(client, -1, nullptr)) SendAll(client, "expired\n");
    return;
  }
  Log(LogLevel::kInfo, "changes released after the backup");
  SendAll(client, "released\n");
}

}  // namespace envelopefs
