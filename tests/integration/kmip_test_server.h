// KmipTestServer — PyKMIP's server (Debian python3-pykmip, `pykmip-server`) for tests: on
// 127.0.0.1 and a free port, with a configuration, policy directory and SQLite database in a
// directory the test owns, the TLS1.2 authentication suite and client certificates required.
// The constructor waits until the server accepts connections; the destructor kills its process
// group (the server and the policy-directory monitor it forks) and reaps it.
// PyKmipInstalled() says whether the tests can run. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>

namespace envelopefs::testing {

bool PyKmipInstalled();

class KmipTestServer {
 public:
  KmipTestServer(const std::filesystem::path& dir, const std::filesystem::path& cert,
                 const std::filesystem::path& key, const std::filesystem::path& ca);
  ~KmipTestServer();
  KmipTestServer(const KmipTestServer&) = delete;
  KmipTestServer& operator=(const KmipTestServer&) = delete;
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace envelopefs::testing
