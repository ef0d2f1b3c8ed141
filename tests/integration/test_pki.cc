// TestPki and TlsTestServer — see test_pki.h.
#include "test_pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace envelopefs::testing {
namespace {

namespace fs = std::filesystem;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("TestPki: ") + what);
}

Pkey NewKey(bool rsa) {
  EVP_PKEY* k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  Check(k != nullptr, "key generation");
  return Pkey(k);
}

void WritePem(const fs::path& path, EVP_PKEY* key, X509* cert) {
  FILE* f = fopen(path.c_str(), "w");
  Check(f != nullptr, "open");
  bool ok = key != nullptr ? PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr)
                           : PEM_write_X509(f, cert);
  fclose(f);
  Check(ok, "PEM write");
}

Pkey ReadKey(const fs::path& path) {
  FILE* f = fopen(path.c_str(), "r");
  Check(f != nullptr, "open key");
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  fclose(f);
  Check(k != nullptr, "read key");
  return Pkey(k);
}

Cert ReadCert(const fs::path& path) {
  FILE* f = fopen(path.c_str(), "r");
  Check(f != nullptr, "open cert");
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  Check(x != nullptr, "read cert");
  return Cert(x);
}

void AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

Cert MakeCert(const std::string& cn, EVP_PKEY* key, long from_days, long to_days, X509* issuer) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++ + time(nullptr));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to_days * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  return cert;
}

}  // namespace

TestPki::TestPki(fs::path dir, std::string ca_name)
    : dir_(std::move(dir)), ca_name_(std::move(ca_name)) {
  Pkey key = NewKey(false);
  Cert ca = MakeCert(ca_name_ + " CA", key.get(), -1, 3650, nullptr);
  AddExt(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExt(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExt(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  Check(X509_sign(ca.get(), key.get(), EVP_sha256()) > 0, "sign CA");
  WritePem(key_path(ca_name_), key.get(), nullptr);
  WritePem(ca_file(), nullptr, ca.get());
}

void TestPki::Issue(const CertSpec& spec) const {
  Cert ca = ReadCert(ca_file());
  Pkey ca_key = ReadKey(key_path(ca_name_));
  Pkey key = NewKey(spec.rsa);
  Cert issued = MakeCert(spec.cn.empty() ? spec.name : spec.cn, key.get(), spec.not_before_days,
                         spec.not_after_days, ca.get());
  X509_gmtime_adj(X509_getm_notAfter(issued.get()),
                  spec.not_after_days * 86400 + spec.extra_seconds);
  AddExt(issued.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExt(issued.get(), ca.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  std::string san;
  for (const auto& d : spec.dns) san += (san.empty() ? "" : ",") + ("DNS:" + d);
  for (const auto& i : spec.ips) san += (san.empty() ? "" : ",") + ("IP:" + i);
  if (!san.empty()) AddExt(issued.get(), ca.get(), NID_subject_alt_name, san);
  Check(X509_sign(issued.get(), ca_key.get(), EVP_sha256()) > 0, "sign");
  WritePem(key_path(spec.name), key.get(), nullptr);
  WritePem(cert(spec.name), nullptr, issued.get());
}

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  Check(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TlsTestServer::TlsTestServer(const fs::path& cert, const fs::path& key, const fs::path& client_ca,
                             const std::vector<std::string>& extra) {
  port_ = FreePort();
  std::vector<std::string> args = {"openssl",
                                   "s_server",
                                   "-accept",
                                   "127.0.0.1:" + std::to_string(port_),
                                   "-cert",
                                   cert.string(),
                                   "-key",
                                   key.string(),
                                   "-CAfile",
                                   client_ca.string(),
                                   "-Verify",
                                   "1",
                                   "-verify_return_error",
                                   "-rev",
                                   "-naccept",
                                   "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  int out[2];
  Check(pipe2(out, O_CLOEXEC) == 0, "pipe");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], 1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp("openssl", argv.data());
    _exit(127);
  }
  close(out[1]);
  // s_server prints ACCEPT once it listens.
  std::string seen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (seen.find("ACCEPT") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{out[0], POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[256];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
  }
  out_fd_ = out[0];  // kept open: s_server dies of SIGPIPE if its stdout is closed
  Check(seen.find("ACCEPT") != std::string::npos, "openssl s_server did not start");
}

TlsTestServer::~TlsTestServer() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

}  // namespace envelopefs::testing
