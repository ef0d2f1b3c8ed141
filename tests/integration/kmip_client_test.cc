// KmipClient (kmip_client.h) against PyKMIP's real server: Create + Activate, AES-GCM Encrypt and
// Decrypt with the key held by the server, a tampered ciphertext refused, a key that is not there
// refused, a client certificate from another CA refused, an unreachable server within the timeout;
// Revoke then Destroy, each answering for a key that is not there or not active.
#include "envelopefs/kmip_client.h"

#include <gtest/gtest.h>

#include <chrono>

#include "envelopefs/error.h"
#include "kmip_server_fixture.h"
#include "kmip_test_server.h"
#include "mount_fixture.h"
#include "test_pki.h"

namespace envelopefs::testing {
namespace {

class KmipClientTest : public KmipServerTest {
 protected:
  TlsClientOptions Tls() const {
    return {pki_.cert("client").string(), pki_.key_path("client").string(), pki_.ca_file().string(),
            std::chrono::seconds(10)};
  }
  HostPort Server() const { return {"127.0.0.1", server_->port()}; }
};

TEST_F(KmipClientTest, CreatesAKeyAndEncryptsAndDecryptsWithIt) {
  KmipClient client(Server(), Tls());
  EXPECT_EQ(client.protocol(), "TLSv1.2");  // PyKMIP's TLS1.2 suite
  EXPECT_EQ(client.cipher().rfind("ECDHE-ECDSA-AES", 0), 0u) << client.cipher();
  std::string id = client.CreateAesKey("envelopefs-test");
  EXPECT_FALSE(id.empty());
  std::vector<uint8_t> iv(kKmipGcmIvSize, 7), aad = {'v', 'o', 'l'}, plain(32, 0x42);
  KmipClient::Sealed sealed = client.EncryptGcm(id, iv, aad, plain);
  EXPECT_EQ(sealed.ciphertext.size(), plain.size());
  EXPECT_NE(sealed.ciphertext, plain);
  // A second connection, as a later mount makes.
  KmipClient again(Server(), Tls());
  SecureBytes back = again.DecryptGcm(id, iv, aad, sealed.ciphertext, sealed.tag);
  EXPECT_EQ(std::vector<uint8_t>(back.span().begin(), back.span().end()), plain);

  std::vector<uint8_t> bad = sealed.ciphertext;
  bad[0] ^= 1;
  try {
    again.DecryptGcm(id, iv, aad, bad, sealed.tag);
    ADD_FAILURE() << "a tampered ciphertext decrypted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused Decrypt"), std::string::npos) << e.what();
  }
}

TEST_F(KmipClientTest, AKeyTheServerDoesNotHaveIsRefused) {
  KmipClient client(Server(), Tls());
  std::vector<uint8_t> iv(kKmipGcmIvSize, 7), plain(32, 1);
  try {
    client.EncryptGcm("424242", iv, {}, plain);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage) << e.what();
    EXPECT_NE(std::string(e.what()).find("refused Encrypt"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

TEST_F(KmipClientTest, RevokesThenDestroysAKey) {
  KmipClient client(Server(), Tls());
  const std::string id = client.CreateAesKey("to-destroy"), kept = client.CreateAesKey("kept");
  std::vector<uint8_t> iv(kKmipGcmIvSize, 7), plain(32, 1);
  KmipClient::Sealed sealed = client.EncryptGcm(kept, iv, {}, plain);
  using Outcome = KmipClient::Outcome;
  // PyKMIP will not destroy an Active key.
  try {
    client.Destroy(id);
    ADD_FAILURE() << "an active key was destroyed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused Destroy"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Outcome::kDone, client.Revoke(id));
  EXPECT_EQ(Outcome::kNotActive, client.Revoke(id));
  EXPECT_EQ(Outcome::kDone, client.Destroy(id));
  EXPECT_EQ(Outcome::kNotFound, client.Destroy(id));
  EXPECT_EQ(Outcome::kNotFound, client.Revoke(id));
  try {
    client.EncryptGcm(id, iv, {}, plain);
    ADD_FAILURE() << "a destroyed key encrypted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage) << e.what();
  }
  // The other key still decrypts.
  SecureBytes back = client.DecryptGcm(kept, iv, {}, sealed.ciphertext, sealed.tag);
  EXPECT_EQ(std::vector<uint8_t>(back.span().begin(), back.span().end()), plain);
}

TEST_F(KmipClientTest, ClientCertificateFromAnotherCaIsRefused) {
  TestPki other(dir_.path(), "other");
  other.Issue("intruder");
  TlsClientOptions tls = Tls();
  tls.cert_file = other.cert("intruder").string();
  tls.key_file = other.key_path("intruder").string();
  try {
    KmipClient client(Server(), tls);
    client.CreateAesKey("x");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the server refused the client certificate"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(KmipClientTest, UnreachableServerFailsWithinTheTimeout) {
  TlsClientOptions tls = Tls();
  tls.timeout = std::chrono::seconds(2);
  auto start = std::chrono::steady_clock::now();
  // 192.0.2.1 (TEST-NET-1) is not routed: the connect waits for the timeout (or fails at once).
  try {
    KmipClient client({"192.0.2.1", 5696}, tls);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to 192.0.2.1:5696"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace envelopefs::testing
