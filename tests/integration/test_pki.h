// TestPki — a throw-away certificate authority for tests: writes a CA certificate and
// certificates it (or another CA) issues, with chosen names, IP addresses and validity, as PEM
// files in a directory, through the OpenSSL API (no openssl.cnf, past dates possible).
// Also TlsTestServer: an `openssl s_server` on 127.0.0.1 and a free port, requiring a client
// certificate, killed and reaped by its destructor. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace envelopefs::testing {

struct CertSpec {
  std::string name;              // files: NAME.crt and NAME.key; also the subject CN
  std::vector<std::string> dns;  // subjectAltName DNS entries
  std::vector<std::string> ips;  // subjectAltName IP entries
  long not_before_days = -1;     // relative to now
  long not_after_days = 365;     // relative to now (negative: expired)
  bool rsa = false;              // RSA-2048 key (default: EC P-256)
  std::string cn;                // the subject CN if not `name`
  long extra_seconds = 0;        // added to not_after
};

class TestPki {
 public:
  // Creates DIR/CA_NAME.crt and DIR/CA_NAME.key, a self-signed CA.
  TestPki(std::filesystem::path dir, std::string ca_name);
  std::filesystem::path ca_file() const { return dir_ / (ca_name_ + ".crt"); }
  std::filesystem::path cert(const std::string& name) const { return dir_ / (name + ".crt"); }
  std::filesystem::path key_path(const std::string& name) const { return dir_ / (name + ".key"); }
  // Issues a certificate signed by this CA.
  void Issue(const CertSpec& spec) const;
  void Issue(const std::string& name, std::vector<std::string> dns = {},
             std::vector<std::string> ips = {}) const {
    CertSpec spec;
    spec.name = name;
    spec.dns = std::move(dns);
    spec.ips = std::move(ips);
    Issue(spec);
  }

 private:
  std::filesystem::path dir_;
  std::string ca_name_;
};

// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
uint16_t FreePort();

class TlsTestServer {
 public:
  // Starts `openssl s_server` with the certificate and key, the CA that client certificates must
  // chain to, and `extra` arguments (e.g. {"-tls1_2", "-cipher", "AES128-GCM-SHA256"}); it
  // reverses each line it receives (-rev). Waits until it accepts.
  TlsTestServer(const std::filesystem::path& cert, const std::filesystem::path& key,
                const std::filesystem::path& client_ca, const std::vector<std::string>& extra);
  ~TlsTestServer();
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace envelopefs::testing
