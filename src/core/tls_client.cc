// TlsConnection — see tls_client.h; the policy is documented in envelopefs(1), KEY SERVERS.
#include "envelopefs/tls_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

using Clock = std::chrono::steady_clock;

// TLS 1.2: ECDHE key exchange with an AEAD only. TLS 1.3 suites are all forward secret; these
// are its AEAD ones (no CCM_8).
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr char kTls13Suites[] =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

std::string Endpoint(const HostPort& server) {
  bool v6 = server.host.find(':') != std::string::npos;
  return (v6 ? "[" + server.host + "]" : server.host) + ":" + std::to_string(server.port);
}

std::string Seconds(std::chrono::milliseconds t) {
  auto ms = t.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// The last OpenSSL error's reason, or `fallback`; clears the queue.
std::string OpenSslReason(const std::string& fallback) {
  unsigned long e = ERR_peek_last_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? reason : fallback;
}

SSL_CTX* MakeContext(const TlsClientOptions& o) {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw Error(ErrorKind::kIo, "TLS: cannot create a context: " + OpenSslReason("?"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(),
                      SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  if (SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(ctx.get(), kTls13Suites) != 1) {
    throw Error(ErrorKind::kInternal, "TLS: cannot set the cipher suites");
  }
  if (o.ca_file.empty() || o.cert_file.empty() || o.key_file.empty()) {
    throw Error(ErrorKind::kUsage, "TLS needs --tls-ca, --tls-cert and --tls-key");
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), o.ca_file.c_str(), nullptr) != 1) {
    throw Error(ErrorKind::kUsage,
                o.ca_file + ": cannot load CA certificates (--tls-ca): " + OpenSslReason("?"));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), o.cert_file.c_str()) != 1) {
    throw Error(
        ErrorKind::kUsage,
        o.cert_file + ": cannot load the client certificate (--tls-cert): " + OpenSslReason("?"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      throw Error(ErrorKind::kUsage, o.key_file +
                                         ": the key (--tls-key) does not match the "
                                         "certificate (--tls-cert)");
    }
    throw Error(ErrorKind::kUsage,
                o.key_file + ": cannot load the client key (--tls-key): " + OpenSslReason("?"));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    throw Error(ErrorKind::kUsage, o.key_file +
                                       ": the key (--tls-key) does not match the "
                                       "certificate (--tls-cert)");
  }
  return ctx.release();
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits until `fd` is ready for `events`; false on timeout.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) ThrowSystemError("poll");
  }
}

UniqueFd ConnectSocket(const HostPort& server, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(server.port);
  int rc = getaddrinfo(server.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    throw Error(ErrorKind::kIo, "cannot resolve " + server.host + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  auto deadline = Clock::now() + timeout;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    UniqueFd fd(socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      why = strerror(errno);
      continue;
    }
    if (connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        why = strerror(errno);
        continue;
      }
      if (!WaitFor(fd.get(), POLLOUT, deadline)) {
        throw Error(ErrorKind::kIo, "cannot connect to " + Endpoint(server) + ": timed out after " +
                                        Seconds(timeout));
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        why = strerror(err);
        continue;
      }
    }
    return fd;
  }
  throw Error(ErrorKind::kIo, "cannot connect to " + Endpoint(server) + ": " + why);
}

// The one line for a failed handshake: the certificate check first, then what OpenSSL reports.
std::string HandshakeFailure(SSL* ssl, const HostPort& server) {
  long verify = SSL_get_verify_result(ssl);
  std::string cause;
  if (verify != X509_V_OK) {
    switch (verify) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        cause = "the server's certificate has expired";
        break;
      case X509_V_ERR_CERT_NOT_YET_VALID:
        cause = "the server's certificate is not valid yet";
        break;
      case X509_V_ERR_HOSTNAME_MISMATCH:
      case X509_V_ERR_IP_ADDRESS_MISMATCH:
        cause = "the server's certificate is not for " + server.host;
        break;
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
      case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        cause = "the server's certificate is not issued by the CA in --tls-ca";
        break;
      default:
        cause = std::string("the server's certificate is refused: ") +
                X509_verify_cert_error_string(verify);
    }
    ERR_clear_error();
    return cause;
  }
  unsigned long e = ERR_peek_last_error();
  int reason = ERR_GET_REASON(e);
  switch (reason) {
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
      ERR_clear_error();
      return "the server does not offer TLS 1.2 or later";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_WRONG_CIPHER_RETURNED:
    case SSL_R_NO_CIPHERS_AVAILABLE:
      ERR_clear_error();
      return "the server offers no allowed cipher suite (ECDHE with AES-GCM or "
             "ChaCha20-Poly1305)";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      ERR_clear_error();
      return "the server refused the client certificate (--tls-cert)";
    default:
      return OpenSslReason("the connection was closed during the handshake");
  }
}

}  // namespace

HostPort ParseHostPort(const std::string& text, const std::string& option) {
  auto bad = [&] {
    return Error(ErrorKind::kUsage,
                 option + " must be HOST:PORT or [IPv6]:PORT, not '" + text + "'");
  };
  HostPort out;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw bad();
    }
    out.host = text.substr(1, close - 1);
    in6_addr a;
    if (inet_pton(AF_INET6, out.host.c_str(), &a) != 1) throw bad();
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) throw bad();
    out.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (out.host.empty() || out.host.size() > 253 || port.empty() || port.size() > 5) throw bad();
  for (char c : out.host) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_')) {
      throw bad();
    }
  }
  unsigned long n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') throw bad();
    n = n * 10 + static_cast<unsigned long>(c - '0');
  }
  if (n == 0 || n > 65535) throw bad();
  out.port = static_cast<uint16_t>(n);
  return out;
}

struct TlsConnection::Impl {
  HostPort server;
  std::chrono::milliseconds timeout;
  UniqueFd fd;
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx;
  std::unique_ptr<SSL, SslFree> ssl;

  std::string Prefix() const { return "TLS to " + Endpoint(server) + ": "; }

  // Runs one SSL call until it completes, waiting for the socket as OpenSSL asks, within the
  // deadline. Returns the call's positive result, or throws with `what` and the cause.
  template <typename Call>
  int Drive(Call call, Clock::time_point deadline, const char* what) {
    for (;;) {
      ERR_clear_error();
      int rc = call();
      if (rc > 0) return rc;
      int err = SSL_get_error(ssl.get(), rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!WaitFor(fd.get(), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          throw Error(ErrorKind::kIo, Prefix() + what + " timed out after " + Seconds(timeout));
        }
        continue;
      }
      std::string cause;
      if (err == SSL_ERROR_ZERO_RETURN ||
          (err == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)) {
        cause = SSL_is_init_finished(ssl.get()) ? "the server closed the connection"
                                                : HandshakeFailure(ssl.get(), server);
      } else {
        cause = HandshakeFailure(ssl.get(), server);
      }
      throw Error(ErrorKind::kIo, Prefix() + cause);
    }
  }
};

TlsConnection::TlsConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TlsConnection::~TlsConnection() {
  if (impl_ && impl_->ssl) {
    // Best effort, never waits: the peer may be gone.
    SSL_shutdown(impl_->ssl.get());
    ERR_clear_error();
  }
}

std::unique_ptr<TlsConnection> TlsConnection::Connect(const HostPort& server,
                                                      const TlsClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->server = server;
  impl->timeout = options.timeout;
  impl->ctx.reset(MakeContext(options));
  impl->fd = ConnectSocket(server, options.timeout);
  impl->ssl.reset(SSL_new(impl->ctx.get()));
  if (!impl->ssl) throw Error(ErrorKind::kIo, impl->Prefix() + OpenSslReason("SSL_new failed"));
  X509_VERIFY_PARAM* param = SSL_get0_param(impl->ssl.get());
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  in6_addr any;
  bool is_ip = inet_pton(AF_INET, server.host.c_str(), &any) == 1 ||
               inet_pton(AF_INET6, server.host.c_str(), &any) == 1;
  if (is_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server.host.c_str()) != 1) {
      throw Error(ErrorKind::kUsage, impl->Prefix() + "bad IP address");
    }
  } else {
    if (X509_VERIFY_PARAM_set1_host(param, server.host.c_str(), 0) != 1 ||
        SSL_set_tlsext_host_name(impl->ssl.get(), server.host.c_str()) != 1) {
      throw Error(ErrorKind::kUsage, impl->Prefix() + "bad host name");
    }
  }
  SSL_set_fd(impl->ssl.get(), impl->fd.get());
  SSL* ssl = impl->ssl.get();
  impl->Drive([ssl] { return SSL_connect(ssl); }, Clock::now() + options.timeout, "handshake");
  std::unique_ptr<TlsConnection> conn(new TlsConnection(std::move(impl)));
  conn->protocol_ = SSL_get_version(ssl);
  conn->cipher_ = SSL_get_cipher_name(ssl);
  return conn;
}

void TlsConnection::WriteAll(std::span<const uint8_t> bytes) {
  auto deadline = Clock::now() + impl_->timeout;
  SSL* ssl = impl_->ssl.get();
  while (!bytes.empty()) {
    size_t done = 0;
    impl_->Drive([&] { return SSL_write_ex(ssl, bytes.data(), bytes.size(), &done); }, deadline,
                 "write");
    bytes = bytes.subspan(done);
  }
}

void TlsConnection::ReadExactly(std::span<uint8_t> out) {
  auto deadline = Clock::now() + impl_->timeout;
  SSL* ssl = impl_->ssl.get();
  while (!out.empty()) {
    size_t done = 0;
    impl_->Drive([&] { return SSL_read_ex(ssl, out.data(), out.size(), &done); }, deadline, "read");
    out = out.subspan(done);
  }
}

}  // namespace envelopefs
