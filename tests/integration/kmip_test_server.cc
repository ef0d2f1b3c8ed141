// KmipTestServer — see kmip_test_server.h.
#include "kmip_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "test_pki.h"

namespace envelopefs::testing {
namespace {

constexpr char kServer[] = "/usr/bin/pykmip-server";

bool Accepts(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

bool PyKmipInstalled() { return access(kServer, X_OK) == 0; }

KmipTestServer::KmipTestServer(const std::filesystem::path& dir, const std::filesystem::path& cert,
                               const std::filesystem::path& key, const std::filesystem::path& ca) {
  port_ = FreePort();
  std::filesystem::create_directories(dir / "policies");
  std::filesystem::path conf = dir / "server.conf";
  {
    std::ofstream out(conf);
    out << "[server]\nhostname=127.0.0.1\nport=" << port_ << "\ncertificate_path=" << cert.string()
        << "\nkey_path=" << key.string() << "\nca_path=" << ca.string()
        << "\nauth_suite=TLS1.2\npolicy_path=" << (dir / "policies").string()
        << "\nenable_tls_client_auth=True\nlogging_level=INFO\ndatabase_path="
        << (dir / "kmip.sqlite").string() << "\n";
  }
  std::string log = (dir / "server.log").string();
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);  // its own group: PyKMIP forks a policy monitor that must go with it
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    execl(kServer, kServer, "-f", conf.c_str(), "-l", log.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  setpgid(pid_, pid_);  // as the child does (whichever runs first)
  while (!Accepts(port_)) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      kill(-pid_, SIGKILL);
      pid_ = -1;
      throw std::runtime_error("pykmip-server exited; see " + log);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      throw std::runtime_error("pykmip-server did not start in 30 s; see " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

KmipTestServer::~KmipTestServer() {
  if (pid_ > 0) {
    // The whole group: the server and the policy-directory monitor it forks (nothing of the
    // test's state is in them).
    kill(-pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

}  // namespace envelopefs::testing
