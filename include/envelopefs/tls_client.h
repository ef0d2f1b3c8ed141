// TlsClient — a TLS client connection to a key server (KMS) that enforces envelopefs' transit
// policy through OpenSSL 3; it knows nothing of KMIP or volumes.
//
// The policy: TLS 1.2 at least (1.3 preferred: OpenSSL offers it first); TLS 1.2 cipher suites
// limited to ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (forward secret, AEAD); the
// server's certificate chain verified against the CA file given (the system's trust store is not
// used) and the certificate checked against the host name, or the IP address when the host is
// one (subjectAltName); the client certificate and key always presented (mutual TLS). Connecting,
// the handshake and every read and write are bounded by a timeout (kTlsDefaultTimeout unless the
// options say otherwise). Every refusal throws Error with one line naming the cause: kUsage for
// an unreadable or mismatched certificate, key or CA file and a malformed HOST:PORT; kIo for a
// server that cannot be reached, is too slow, or breaks the policy (protocol, cipher suite,
// certificate). Thread-safety: one connection is used by one thread at a time; distinct
// connections are independent.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace envelopefs {

inline constexpr std::chrono::milliseconds kTlsDefaultTimeout{10000};

struct TlsClientOptions {
  std::string cert_file;  // PEM client certificate (--tls-cert)
  std::string key_file;   // PEM private key of that certificate (--tls-key)
  std::string ca_file;    // PEM CA certificate(s) the server's chain must lead to (--tls-ca)
  std::chrono::milliseconds timeout = kTlsDefaultTimeout;  // connect, handshake, each read/write
};

struct HostPort {
  std::string host;  // a name, an IPv4 address or an IPv6 address (without brackets)
  uint16_t port = 0;
};

// Parses "HOST:PORT" or "[IPv6]:PORT"; throws Error(kUsage) naming `option` on anything else.
HostPort ParseHostPort(const std::string& text, const std::string& option);

class TlsConnection {
 public:
  // Connects and completes the handshake under the policy, or throws (see above).
  static std::unique_ptr<TlsConnection> Connect(const HostPort& server,
                                                const TlsClientOptions& options);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // Sends all of `bytes`, or throws Error(kIo).
  void WriteAll(std::span<const uint8_t> bytes);
  // Fills `out` exactly, or throws Error(kIo) (a closed connection included).
  void ReadExactly(std::span<uint8_t> out);

  // What was negotiated, e.g. "TLSv1.3" and "TLS_AES_256_GCM_SHA384" (for the audit log).
  const std::string& protocol() const { return protocol_; }
  const std::string& cipher() const { return cipher_; }

 private:
  struct Impl;
  explicit TlsConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string protocol_;
  std::string cipher_;
};

}  // namespace envelopefs
