// Mounted and envelopectl tests of the KMIP master-key source with PyKMIP's real server (Debian
// python3-pykmip, installed by scripts/install-deps; the tests fail, never skip, without it):
// init, mount, write, remount, read; change-master file -> KMIP -> file; an unreachable or silent
// KMS and a client certificate from another CA, each one line with nothing changed; the TLS
// protocol and suite of every KMS connection in the audit log; DestroyProtectingKey.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "envelopectl_fixture.h"
#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/keyring.h"
#include "envelopefs/kmip_client.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"
#include "kmip_server_fixture.h"
#include "kmip_test_server.h"
#include "mount_fixture.h"
#include "test_pki.h"

namespace envelopefs::testing {
namespace {

const std::string kDaemon = ENVELOPEFS_BINARY;

class KmipSource : public KmipServerTest {
 protected:
  // The KMIP options for `address` (default: the test's server), `prefix` "" or "new-".
  std::string Flags(const std::string& prefix = "", std::string address = "",
                    const std::string& client = "client", const TestPki* issuer = nullptr) const {
    if (address.empty()) address = server_->address();
    const TestPki& pki = issuer != nullptr ? *issuer : pki_;
    return " --" + prefix + "kmip-server " + address + " --" + prefix + "tls-cert " +
           Quote(pki.cert(client)) + " --" + prefix + "tls-key " + Quote(pki.key_path(client)) +
           " --" + prefix + "tls-ca " + Quote(pki_.ca_file()) + " ";
  }

  // The options that open volume `cipher`: Flags() and the key id its keyring names (a test may
  // read it there; a user gives the id init printed).
  std::string Opens(const fs::path& cipher) const {
    return Flags() + "--kmip-key-id " +
           KeyringValue(ReadFile(cipher / "envelopefs.keyring"), "key_id") + " ";
  }

  // A new AES key on the test's server (Create, Activate); its id.
  std::string NewServerKey() const {
    KmipClient client(ParseHostPort(server_->address(), "kms"),
                      {pki_.cert("client").string(), pki_.key_path("client").string(),
                       pki_.ca_file().string(), std::chrono::seconds(10)});
    return client.CreateAesKey("envelopefs test");
  }

  // The source for the test's server, given key `key_id` or creating a key.
  std::unique_ptr<MasterKeySource> Source(std::optional<std::string> key_id = {}) const {
    KmipSourceOptions options;
    options.server = server_->address();
    options.key_id = key_id;
    options.create_key = !key_id;
    options.tls = {pki_.cert("client").string(), pki_.key_path("client").string(),
                   pki_.ca_file().string(), std::chrono::seconds(10)};
    return MakeKmipSource(options);
  }
};

// Every audit line with event `event` (that names no other source) has the KMS and the
// negotiated protocol and suite.
void ExpectTlsAudited(const fs::path& cipher, const std::string& event, size_t at_least) {
  size_t seen = 0;
  for (const json& e : AuditLines(cipher / "envelopefs.audit.log")) {
    if (e.value("event", "") != event || e.value("source", "kmip") != "kmip") continue;
    ++seen;
    EXPECT_EQ(e.value("tls_protocol", ""), "TLSv1.2") << e.dump();
    EXPECT_EQ(e.value("tls_cipher", "").rfind("ECDHE-ECDSA-AES", 0), 0u) << e.dump();
    EXPECT_EQ(e.value("tls_cipher", "").find("GCM"), e.value("tls_cipher", "").size() - 10)
        << e.dump();
    EXPECT_EQ(e.value("kms", "").rfind("127.0.0.1:", 0), 0u) << e.dump();
  }
  EXPECT_GE(seen, at_least) << event;
}

TEST_F(KmipSource, AKmipVolumeMountsWritesRemountsAndReads) {
  const std::string id = NewServerKey();
  MountedVolume v({"", "", Flags() + "--kmip-key-id " + id});
  WriteFile(v / "a.txt", "through the KMS");
  v.Unmount();
  // Without the key id: refused, the keyring's own id is not used on its own.
  ExpectOneLine(kCtl + " keys list" + Flags() + Quote(v.cipher()), 2,
                "give the KMIP key's id with --kmip-key-id ID");
  v.Mount();
  EXPECT_EQ("through the KMS", ReadFile(v / "a.txt"));
  v.Unmount();

  const std::string keyring = ReadFile(v.cipher() / "envelopefs.keyring");
  EXPECT_TRUE(Contains(keyring, "source = 'kmip'")) << keyring;
  EXPECT_TRUE(Contains(keyring, "mode = 'AES-GCM'")) << keyring;
  EXPECT_FALSE(Contains(keyring, dir_.path().string())) << "no paths stored";
  ExpectTlsAudited(v.cipher(), "volume_created", 1);
  ExpectTlsAudited(v.cipher(), "volume_unlocked", 2);

  // Another id is refused with one line.
  EXPECT_EQ(id, KeyringValue(keyring, "key_id"));
  ExpectOneLine(kCtl + " keys list" + Flags() + "--kmip-key-id 99999 " + Quote(v.cipher()), 2,
                "protected by KMIP key \"" + id + "\", not \"99999\"");
}

TEST_F(KmipSource, ChangeMasterGoesFromFileToKmipAndBackToFile) {
  MountedVolume v;
  WriteFile(v / "kept.txt", "kept across three master keys");
  v.Unmount();
  const std::string dir = " " + Quote(v.cipher());
  const fs::path keyring = v.cipher() / "envelopefs.keyring";

  // key file -> KMIP (creating the server key)
  CommandResult r = RunCommand(kCtl + " keys change-master --keyfile " + Quote(v.keyfile()) +
                               Flags("new-") + "--kmip-create-key" + dir);
  ASSERT_EQ(0, r.exit_code) << r.output;
  EXPECT_TRUE(Contains(ReadFile(keyring), "source = 'kmip'"));
  ExpectOneLine(kCtl + " keys list --keyfile " + Quote(v.keyfile()) + dir, 2,
                "protected by KMIP key");
  EXPECT_TRUE(Contains(r.output, "--kmip-key-id " + KeyringValue(ReadFile(keyring), "key_id")))
      << r.output;  // the new key's id is shown
  v.set_key_flags(Opens(v.cipher()));
  v.Mount();
  EXPECT_EQ("kept across three master keys", ReadFile(v / "kept.txt"));
  v.Unmount();

  // KMIP -> a new key file
  TempDir t;
  const fs::path key2 = t.path() / "key2";
  ASSERT_EQ(0, RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(key2)).exit_code);
  r = RunCommand(kCtl + " keys change-master" + Opens(v.cipher()) + "--new-keyfile " + Quote(key2) +
                 dir);
  ASSERT_EQ(0, r.exit_code) << r.output;
  v.set_key_flags("--keyfile " + Quote(key2));
  v.Mount();
  EXPECT_EQ("kept across three master keys", ReadFile(v / "kept.txt"));
  v.Unmount();

  std::vector<std::string> sources;
  for (const json& e : AuditLines(v.cipher() / "envelopefs.audit.log")) {
    if (e.value("event", "") == "master_key_changed") sources.push_back(e.value("source", ""));
  }
  EXPECT_EQ((std::vector<std::string>{"kmip", "keyfile"}), sources);
  ExpectTlsAudited(v.cipher(), "master_key_changed", 1);
}

TEST_F(KmipSource, FailuresGiveOneLineAndChangeNothing) {
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  // No key id and no --kmip-create-key: refused, nothing created.
  ExpectOneLine(kCtl + " init" + Flags() + Quote(cipher), 2, "needs --kmip-key-id ID");
  EXPECT_FALSE(fs::exists(cipher));
  ExpectOneLine(kCtl + " init" + Flags() + "--kmip-key-id 4242 " + Quote(cipher), 2,
                "refused Encrypt");
  EXPECT_FALSE(fs::exists(cipher));
  ExpectOneLine(kCtl + " init" + Flags() + "--kmip-create-key --kmip-key-id 1 " + Quote(cipher), 2,
                "--kmip-create-key creates the key");
  ExpectOneLine(kCtl + " init --kmip-server 127.0.0.1:1 " + Quote(cipher), 2,
                "a KMIP master key needs --kmip-server HOST:PORT, --tls-cert FILE");
  ExpectOneLine(kCtl + " init" + Flags("", "kms.example.org") + Quote(cipher), 2,
                "--kmip-server must be HOST:PORT");
  ASSERT_EQ(0,
            RunCommand(kCtl + " init" + Flags() + "--kmip-create-key " + Quote(cipher)).exit_code);
  const std::string keyring = ReadFile(cipher / "envelopefs.keyring");
  const std::string dir = "--kmip-key-id " + KeyringValue(keyring, "key_id") + " " + Quote(cipher);
  const fs::path mnt = t.path() / "mnt";
  fs::create_directories(mnt);

  // A client certificate from another CA: the server refuses it.
  TestPki other(t.path(), "other");
  other.Issue("intruder");
  ExpectOneLine(kCtl + " keys list" + Flags("", "", "intruder", &other) + dir, 6,
                "the server refused the client certificate (--tls-cert)");
  ExpectOneLine(kDaemon + " -f" + Flags("", "", "intruder", &other) + dir + " " + Quote(mnt), 6,
                "envelopefs: TLS to 127.0.0.1:");
  EXPECT_FALSE(IsFuseMount(mnt));

  // Nothing listening: refused at once.
  const std::string nobody = "127.0.0.1:" + std::to_string(FreePort());
  ExpectOneLine(kCtl + " keys list" + Flags("", nobody) + dir, 6,
                "cannot connect to " + nobody + ": Connection refused");
  ExpectOneLine(kDaemon + " -f" + Flags("", nobody) + dir + " " + Quote(mnt), 6,
                "cannot connect to " + nobody);
  EXPECT_FALSE(IsFuseMount(mnt));

  // A KMS that accepts the connection and never answers: the 10 s handshake timeout.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string silent = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  auto start = std::chrono::steady_clock::now();
  ExpectOneLine(kCtl + " keys change-master" + Flags("", silent) + "--new-keyfile /dev/null " + dir,
                6, "TLS to " + silent + ": handshake timed out after 10 s");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  close(listener);

  EXPECT_EQ(keyring, ReadFile(cipher / "envelopefs.keyring"));
  bool logged = false;
  for (const json& e : AuditLines(cipher / "envelopefs.audit.log")) {
    logged = logged || (e.value("event", "") == "unlock_failed" &&
                        Contains(e.value("reason", ""), "cannot connect to " + nobody) &&
                        e.value("kms", "") == nobody);
  }
  EXPECT_TRUE(logged) << ReadFile(cipher / "envelopefs.audit.log");
  // Still opens with the right options.
  EXPECT_EQ(0, RunCommand(kCtl + " keys list" + Flags() + dir).exit_code);
}

// keys list reports the client certificate's expiry and, with --check, alerts 30, 14 and 7 days
// ahead with exit 9.
TEST_F(KmipSource, KeysListCheckAlertsBeforeTheClientCertificateExpires) {
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  ASSERT_EQ(0,
            RunCommand(kCtl + " init" + Flags() + "--kmip-create-key " + Quote(cipher)).exit_code);
  const struct {
    long days;
    int alert;  // 0: none
  } cases[] = {{40, 0}, {20, 30}, {10, 14}, {3, 7}};
  const std::string id =
      "--kmip-key-id " + KeyringValue(ReadFile(cipher / "envelopefs.keyring"), "key_id") + " ";
  for (const auto& c : cases) {
    CertSpec spec;
    spec.name = "client" + std::to_string(c.days);
    spec.cn = "client";  // PyKMIP gives keys to the certificate's common name
    spec.not_after_days = c.days;
    spec.extra_seconds = 3600;
    pki_.Issue(spec);
    const std::string list =
        kCtl + " keys list --check" + Flags("", "", spec.name) + id + Quote(cipher);
    CommandResult json_out = RunCommand(list + " --json 2>/dev/null");
    EXPECT_EQ(c.alert != 0 ? 9 : 0, json_out.exit_code) << c.days << json_out.output;
    const json j = json::parse(json_out.output);
    const json& cert = j.at("client_certificate");
    EXPECT_EQ(cert.at("file"), pki_.cert(spec.name).string());
    EXPECT_EQ(cert.at("days_left"), c.days);
    if (c.alert != 0) {
      EXPECT_EQ(cert.at("alert_days"), c.alert);
    } else {
      EXPECT_TRUE(cert.at("alert_days").is_null());
    }
    CommandResult text = RunCommand(list + " 2>&1");
    EXPECT_TRUE(
        Contains(text.output, "client certificate " + pki_.cert(spec.name).string() + " expires "))
        << text.output;
    EXPECT_EQ(Contains(text.output, "expires in " + std::to_string(c.days) + " days"), c.alert != 0)
        << text.output;
    if (c.alert != 0) {
      EXPECT_TRUE(Contains(text.output, "alert at " + std::to_string(c.alert) + " days"))
          << text.output;
    }
    // Without --check: reported, not alerted.
    EXPECT_EQ(
        0,
        RunCommand(kCtl + " keys list" + Flags("", "", spec.name) + id + Quote(cipher)).exit_code);
  }
}

// The [master_key] kmip section is read before anything is authenticated: every edit is refused
// with one line and nothing is sent that could open another volume.
TEST_F(KmipSource, EditsOfTheKmipSectionAreRefused) {
  TempDir t;
  const fs::path cipher = t.path() / "cipher", other = t.path() / "other";
  ASSERT_EQ(0,
            RunCommand(kCtl + " init" + Flags() + "--kmip-create-key " + Quote(cipher)).exit_code);
  const fs::path keyring = cipher / "envelopefs.keyring";
  const std::string original = ReadFile(keyring);
  const std::string wrapped = KeyringValue(original, "wrapped"), iv = KeyringValue(original, "iv"),
                    id = KeyringValue(original, "key_id");
  std::string flipped = wrapped;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  const std::string list = kCtl + " keys list" + Opens(cipher) + Quote(cipher);
  const std::vector<KeyringEdit> edits = {
      {"mode = 'AES-GCM'", "mode = 'AES-CBC'", 4, "invalid [master_key] kmip"},
      {"iv = '" + iv + "'", "iv = '" + iv.substr(2) + "'", 4, "invalid [master_key] kmip"},
      {"wrapped = '" + wrapped + "'", "wrapped = 'zz'", 4, "invalid [master_key] kmip"},
      {"key_id = '" + id + "'", "key_id = 'a\\u001bb'", 4, "invalid [master_key] kmip"},
      {"key_id = '" + id + "'", "key_id = '" + std::string(65, '1') + "'", 4,
       "invalid [master_key] kmip"},
      // PyKMIP reports a failed authentication as a general failure (exit 6).
      {"wrapped = '" + wrapped + "'", "wrapped = '" + flipped + "'", 6, "refused Decrypt"},
      {"iv = '" + iv + "'", "iv = '" + std::string(24, '0') + "'", 6, "refused Decrypt"},
  };
  ExpectKeyringEdits(keyring, original, list, edits);
  // Another volume's master key, encrypted by the same server key: bound to that volume's id.
  ASSERT_EQ(
      0,
      RunCommand(kCtl + " init" + Flags() + "--kmip-key-id " + id + " " + Quote(other)).exit_code);
  const std::string theirs = ReadFile(other / "envelopefs.keyring");
  std::string planted = original;
  planted.replace(planted.find(wrapped), wrapped.size(), KeyringValue(theirs, "wrapped"));
  planted.replace(planted.find(iv), iv.size(), KeyringValue(theirs, "iv"));
  WriteFile(keyring, planted);
  ExpectOneLine(list, 6, "refused Decrypt");
  WriteFile(keyring, original);
  EXPECT_EQ(0, RunCommand(list).exit_code);
}

// Retirement: the old master key's server key is revoked and destroyed; the old master key can
// no longer be produced, a second destroy succeeds, another key is untouched, a key already
// deactivated is destroyed as it is, and the key given with --kmip-key-id is never destroyed.
TEST_F(KmipSource, DestroyProtectingKeyDestroysTheOldServerKeyOnly) {
  VolumeId volume{};
  RandomBytes(volume);
  auto creating = Source();
  const MasterKeyParams old_params = creating->NewParams(volume);
  const MasterKeyParams other_params = creating->NewParams(volume);
  const MasterKeyParams new_params = creating->NewParams(volume);
  const std::string old_id = old_params.kmip->key_id, new_id = new_params.kmip->key_id;
  ASSERT_NE(old_id, other_params.kmip->key_id);
  ASSERT_EQ(kKeySize, Source(old_id)->MasterKey(old_params, volume).size());

  auto source = Source(new_id);  // configured for the new key, given the old params
  const std::string what = "kmip key \"" + old_id + "\" on " + server_->address();
  EXPECT_EQ(what, source->DestroyProtectingKey(old_params, volume));
  const auto audit = source->AuditFields();
  EXPECT_EQ(server_->address(), audit.at("kms"));
  EXPECT_EQ("TLSv1.2", audit.at("tls_protocol"));
  EXPECT_EQ(0u, audit.at("tls_cipher").rfind("ECDHE-ECDSA-AES", 0)) << audit.at("tls_cipher");
  try {
    Source(old_id)->MasterKey(old_params, volume);
    ADD_FAILURE() << "the old master key is still produced";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind());
    EXPECT_TRUE(Contains(e.what(), "KMS " + server_->address() + " refused Decrypt")) << e.what();
    EXPECT_FALSE(Contains(e.what(), "\n"));
  }
  EXPECT_EQ(what + " (already gone)", source->DestroyProtectingKey(old_params, volume));
  EXPECT_EQ(kKeySize, Source(other_params.kmip->key_id)->MasterKey(other_params, volume).size());
  EXPECT_EQ(kKeySize, source->MasterKey(new_params, volume).size());

  // A key already revoked (e.g. a crash between Revoke and Destroy) is destroyed as it is.
  {
    KmipClient client({"127.0.0.1", server_->port()},
                      {pki_.cert("client").string(), pki_.key_path("client").string(),
                       pki_.ca_file().string(), std::chrono::seconds(10)});
    ASSERT_EQ(KmipClient::Outcome::kDone, client.Revoke(other_params.kmip->key_id));
  }
  EXPECT_EQ("kmip key \"" + other_params.kmip->key_id + "\" on " + server_->address(),
            source->DestroyProtectingKey(other_params, volume));
  EXPECT_THROW(Source(other_params.kmip->key_id)->MasterKey(other_params, volume), Error);

  // The key the source is configured with is refused; params of another kind too.
  try {
    source->DestroyProtectingKey(new_params, volume);
    ADD_FAILURE() << "destroyed the source's own key";
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind());
    EXPECT_EQ("refusing to destroy KMIP key \"" + new_id +
                  "\": it is the key given with --kmip-key-id, which protects the current master "
                  "key",
              std::string(e.what()));
  }
  EXPECT_THROW(source->DestroyProtectingKey(MasterKeyParams{}, VolumeId{}), Error);
  EXPECT_EQ(kKeySize, source->MasterKey(new_params, volume).size());
}

// keys retire --destroy-old-master on a KMIP volume: the keyring moves to a key created on the
// server, the old server key is revoked and destroyed, and an old copy of the keyring opens no
// more (the server no longer has its key).
TEST_F(KmipSource, RetireWithDestroyOldMasterDestroysTheOldServerKey) {
  TempDir t;
  const fs::path cipher = t.path() / "cipher";
  ASSERT_EQ(0,
            RunCommand(kCtl + " init" + Flags() + "--kmip-create-key " + Quote(cipher)).exit_code);
  const fs::path keyring = cipher / "envelopefs.keyring";
  const std::string old_copy = ReadFile(keyring);
  const std::string old_id = KeyringValue(old_copy, "key_id");
  ASSERT_EQ(0, RunCommand(kCtl + " keys rotate" + Opens(cipher) + Quote(cipher)).exit_code);
  CommandResult retired = RunCommand(kCtl + " keys retire --kek-version 1 --destroy-old-master" +
                                     Opens(cipher) + Quote(cipher));
  ASSERT_EQ(0, retired.exit_code) << retired.output;
  EXPECT_TRUE(Contains(retired.output, "destroyed kmip key")) << retired.output;
  // The volume opens with the new key, whose id the command printed.
  const std::string new_id = KeyringValue(ReadFile(keyring), "key_id");
  EXPECT_NE(old_id, new_id);
  EXPECT_TRUE(Contains(retired.output, "KMIP key \"" + new_id + "\"")) << retired.output;
  json list =
      json::parse(RunCommand(kCtl + " keys list --json" + Opens(cipher) + Quote(cipher)).output);
  EXPECT_EQ("retired", list["keys"][0]["state"]) << list.dump();
  EXPECT_EQ(0u, list["old_master_keys_to_destroy"].size());
  std::vector<json> events = AuditLines(cipher / "envelopefs.audit.log");
  const json* destroyed = FindEvent(events, "old_master_destroyed");
  ASSERT_NE(nullptr, destroyed);
  EXPECT_EQ(destroyed->value("tls_protocol", ""), "TLSv1.2") << destroyed->dump();
  // The old copy, put back, names a key the server has destroyed.
  WriteFile(keyring, old_copy);
  ExpectOneLine(kCtl + " keys list" + Flags() + "--kmip-key-id " + old_id + " " + Quote(cipher), 2,
                "refused Decrypt");
}

// Found by the review: the key id the keyring names is read before the keyring is
// authenticated. Anyone who can write the cipher dir and Encrypt under some key of the same KMS
// that the owner's client may Decrypt with (here: another key, same client identity) could write
// a whole new keyring for the owner's volume, which the owner's credentials would open, and every
// file written from then on would be under KEKs the attacker chose. So the key id is always the
// one the owner gives (--kmip-key-id), never the keyring's on its own.
TEST_F(KmipSource, AKeyringForgedUnderAnotherKmsKeyIsRefused) {
  const fs::path cipher = dir_.path() / "cipher";
  Volume::Create(cipher, {}, *Source());  // the owner's volume, under a key the KMS creates
  const std::string owner_id = KeyringValue(ReadFile(cipher / "envelopefs.keyring"), "key_id");
  UniqueFd root(::open(cipher.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const VolumeConfig config = VolumeConfig::LoadAt(root.get(), cipher);
  // The attacker: a key of its own on the same KMS, a master key it knows, KEKs it knows.
  auto attacker = Source();
  const MasterKeyParams params = attacker->NewParams(config.volume_id);
  const SecureBytes master = attacker->MasterKey(params, config.volume_id);
  Keyring forged = Keyring::CreateNew(config.created_unix, config.volume_id, params, master, {});
  forged.set_generation(1000);  // newer than anything this host has seen
  forged.Save(root.get(), cipher, config);
  bool opened = false;
  try {
    Volume::Open(cipher, *Source(owner_id));  // the owner's options, with their key id
    opened = true;
  } catch (const Error&) {
  }
  EXPECT_FALSE(opened) << "the owner's KMS credentials open a keyring the attacker made";
}

}  // namespace
}  // namespace envelopefs::testing
