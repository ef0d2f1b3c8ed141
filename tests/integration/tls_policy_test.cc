// The TLS policy of key-server connections (tls_client.h) against `openssl s_server` endpoints
// on 127.0.0.1 with certificates the test makes: each refusal has its one line; a good server is
// accepted and the negotiated protocol and suite are reported.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "envelopefs/error.h"
#include "envelopefs/tls_client.h"
#include "mount_fixture.h"
#include "test_pki.h"

namespace envelopefs::testing {
namespace {

class TlsPolicy : public ::testing::Test {
 protected:
  TlsPolicy() : pki_(dir_.path(), "ca"), other_(dir_.path(), "other") {
    pki_.Issue("server", {"localhost"}, {"127.0.0.1"});
    pki_.Issue("client");
  }

  TlsClientOptions Client() const {
    return {pki_.cert("client").string(), pki_.key_path("client").string(), pki_.ca_file().string(),
            std::chrono::seconds(10)};
  }

  // Starts a server with `cert` (issued by `issuer`) and `extra` s_server arguments, connects to
  // `host` and returns the error line ("" on success).
  std::string ConnectError(const TestPki& issuer, const std::string& cert,
                           const std::vector<std::string>& extra,
                           const std::string& host = "127.0.0.1") {
    TlsTestServer server(issuer.cert(cert), issuer.key_path(cert), pki_.ca_file(), extra);
    try {
      auto conn = TlsConnection::Connect({host, server.port()}, Client());
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      return e.what();
    }
  }

  TempDir dir_;
  TestPki pki_;
  TestPki other_;
};

TEST_F(TlsPolicy, GoodServerIsAcceptedWithTls13AndDataFlows) {
  TlsTestServer server(pki_.cert("server"), pki_.key_path("server"), pki_.ca_file(), {});
  auto conn = TlsConnection::Connect({"127.0.0.1", server.port()}, Client());
  EXPECT_EQ(conn->protocol(), "TLSv1.3");
  EXPECT_EQ(conn->cipher(), "TLS_AES_256_GCM_SHA384");
  std::string hello = "hello\n";
  conn->WriteAll({reinterpret_cast<const uint8_t*>(hello.data()), hello.size()});
  uint8_t back[6];
  conn->ReadExactly(back);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(back), 6), "olleh\n");
}

TEST_F(TlsPolicy, GoodServerIsAcceptedByHostNameAndWithTls12Ecdhe) {
  TlsTestServer server(pki_.cert("server"), pki_.key_path("server"), pki_.ca_file(),
                       {"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"});
  auto conn = TlsConnection::Connect({"localhost", server.port()}, Client());
  EXPECT_EQ(conn->protocol(), "TLSv1.2");
  EXPECT_EQ(conn->cipher(), "ECDHE-ECDSA-CHACHA20-POLY1305");
}

TEST_F(TlsPolicy, Tls11OnlyServerIsRefused) {
  std::string error = ConnectError(pki_, "server", {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"});
  EXPECT_TRUE(Contains(error, "the server does not offer TLS 1.2 or later")) << error;
}

TEST_F(TlsPolicy, ServerWithOnlyRsaKeyExchangeIsRefused) {
  CertSpec rsa;
  rsa.name = "rsa-server";
  rsa.ips = {"127.0.0.1"};
  rsa.rsa = true;
  pki_.Issue(rsa);
  std::string error =
      ConnectError(pki_, "rsa-server", {"-no_tls1_3", "-cipher", "AES256-GCM-SHA384:AES128-SHA"});
  EXPECT_TRUE(Contains(error, "the server offers no allowed cipher suite")) << error;
}

TEST_F(TlsPolicy, ServerWithOnlyCbcSuitesIsRefused) {
  std::string error =
      ConnectError(pki_, "server",
                   {"-no_tls1_3", "-cipher", "ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA"});
  EXPECT_TRUE(Contains(error, "the server offers no allowed cipher suite")) << error;
}

TEST_F(TlsPolicy, ServerCertificateFromAnotherCaIsRefused) {
  other_.Issue("stranger", {}, {"127.0.0.1"});
  std::string error = ConnectError(other_, "stranger", {});
  EXPECT_TRUE(Contains(error, "the server's certificate is not issued by the CA in --tls-ca"))
      << error;
}

TEST_F(TlsPolicy, ServerCertificateForAnotherHostIsRefused) {
  pki_.Issue("elsewhere", {"kms.example.org"}, {"192.0.2.7"});
  std::string error = ConnectError(pki_, "elsewhere", {});
  EXPECT_TRUE(Contains(error, "the server's certificate is not for 127.0.0.1")) << error;
  error = ConnectError(pki_, "elsewhere", {}, "localhost");
  EXPECT_TRUE(Contains(error, "the server's certificate is not for localhost")) << error;
}

TEST_F(TlsPolicy, ExpiredServerCertificateIsRefused) {
  CertSpec expired;
  expired.name = "expired";
  expired.ips = {"127.0.0.1"};
  expired.not_before_days = -30;
  expired.not_after_days = -1;
  pki_.Issue(expired);
  std::string error = ConnectError(pki_, "expired", {});
  EXPECT_TRUE(Contains(error, "the server's certificate has expired")) << error;
}

TEST_F(TlsPolicy, UnreachableServerFailsWithinTheTimeout) {
  uint16_t port = FreePort();  // nothing listens there
  try {
    TlsConnection::Connect({"127.0.0.1", port}, Client());
    ADD_FAILURE() << "connected";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "cannot connect to 127.0.0.1:")) << e.what();
  }
  // A server that accepts but never answers the handshake: bounded by the timeout.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  TlsClientOptions options = Client();
  options.timeout = std::chrono::milliseconds(1500);
  auto start = std::chrono::steady_clock::now();
  try {
    TlsConnection::Connect({"127.0.0.1", ntohs(a.sin_port)}, options);
    ADD_FAILURE() << "connected";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "handshake timed out after 1500 ms")) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  close(listener);
}

TEST_F(TlsPolicy, ClientCertificateFromAnotherCaIsRefusedByTheServer) {
  other_.Issue("intruder");
  TlsTestServer server(pki_.cert("server"), pki_.key_path("server"), pki_.ca_file(), {});
  TlsClientOptions options = Client();
  options.cert_file = other_.cert("intruder").string();
  options.key_file = other_.key_path("intruder").string();
  try {
    // TLS 1.3: the server's refusal arrives after the client's handshake is done.
    auto conn = TlsConnection::Connect({"127.0.0.1", server.port()}, options);
    uint8_t byte[1];
    conn->ReadExactly(byte);
    ADD_FAILURE() << "read succeeded";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "the server refused the client certificate")) << e.what();
  }
}

TEST_F(TlsPolicy, BadClientFilesAreUsageErrors) {
  TlsClientOptions options = Client();
  options.key_file = pki_.key_path("server").string();  // does not match client.crt
  try {
    TlsConnection::Connect({"127.0.0.1", 1}, options);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_TRUE(Contains(e.what(), "does not match the certificate")) << e.what();
  }
  options = Client();
  options.ca_file = (dir_.path() / "missing.crt").string();
  try {
    TlsConnection::Connect({"127.0.0.1", 1}, options);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_TRUE(Contains(e.what(), "cannot load CA certificates (--tls-ca)")) << e.what();
  }
}

TEST(HostPortParsing, AcceptsNamesAddressesAndRefusesTheRest) {
  EXPECT_EQ(ParseHostPort("kms.example.org:5696", "--kmip-server").host, "kms.example.org");
  EXPECT_EQ(ParseHostPort("127.0.0.1:5696", "--kmip-server").port, 5696);
  EXPECT_EQ(ParseHostPort("[::1]:5696", "--kmip-server").host, "::1");
  for (const char* bad : {"", "kms", "kms:", ":5696", "kms:0", "kms:65536", "kms:56x", "::1:5696",
                          "[::1]5696", "[zz]:1", "a b:1", "kms:-1"}) {
    try {
      ParseHostPort(bad, "--kmip-server");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_TRUE(Contains(e.what(), "--kmip-server must be HOST:PORT")) << e.what();
    }
  }
}

}  // namespace
}  // namespace envelopefs::testing
