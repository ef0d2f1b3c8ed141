// MasterKeySource — where a volume's 256-bit master key comes from.
//
// The master key only unwraps the keyring. Sources: a key file (32 raw random bytes), a
// passphrase through Argon2id, a command's standard output (command_source.cc), and a key
// encrypted by an AES key in a PKCS#11 token (pkcs11_source.cc) or by a KMIP key server
// (kmip_source.cc). Implementations are immutable after construction and
// thread-safe (the PKCS#11 source loads its module and opens a session per call).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "envelopefs/error.h"
#include "envelopefs/secure_bytes.h"
#include "envelopefs/tls_client.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

class MasterKeySource {
 public:
  virtual ~MasterKeySource() = default;
  virtual MasterKeyKind kind() const = 0;
  // Produces the master key described by `params`. Throws Error(kConfig/kIo/kUsage) with a
  // clear line (kUsage when the source does not match the volume's kind of master key).
  // `volume` is the volume's id (the PKCS#11 source binds the encrypted key to it).
  virtual SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId& volume) const = 0;
  // Fresh parameters for a new master key from this source (e.g. Argon2id salt and limits; for
  // PKCS#11 a new random master key, encrypted by the token).
  virtual MasterKeyParams NewParams(const VolumeId& volume) const = 0;
  // For a key-server source, what the audit log records of its last connection ("kms",
  // "tls_protocol", "tls_cipher"); empty for the others.
  virtual std::map<std::string, std::string> AuditFields() const { return {}; }
  // Destroys, in the token or key server, the key that protects the master key `params`
  // describes, so that nothing that holds `params` (an old keyring copy) can produce that master
  // key again. A key that is already gone counts as destroyed (idempotent: a retried command after
  // a crash must succeed). Error(kUsage) for sources that hold no such key (key file, passphrase,
  // command): the default implementation. Returns a one-line description of what was destroyed
  // for the audit log (e.g. `pkcs11 token "t" key "k"`, `kmip key "42" on host:port`), followed
  // by ` (already gone)` when there was nothing left to destroy.
  //
  // Afterwards MasterKey(params, ...) fails with one line, Error(kUsage): `PKCS#11 token "t" has
  // no AES key labelled "k"` or `KMS host:port refused Decrypt: ...`.
  //
  // `params` is meant to be the OLD master key's, the source configured for the NEW one. The key
  // this source is configured to use (--pkcs11-token/--pkcs11-key, or --kmip-key-id) is never
  // destroyed: Error(kUsage) if `params` names it, since it protects (or is about to protect) the
  // master key the volume depends on now. The caller must also make sure the keyring it keeps
  // does not depend on the key `params` names (e.g. a new master key from the same token key, or
  // a KMIP source given no key id that reuses the old one).
  //
  // `volume` is the volume whose master key `params` protects: a token key is destroyed only if
  // envelopefs created it for that volume (its CKA_ID; see pkcs11_source.cc), never a key that
  // another volume may depend on (Error(kUsage)).
  virtual std::string DestroyProtectingKey(const MasterKeyParams& params,
                                           const VolumeId& volume) const;
  // Throws what DestroyProtectingKey would for the key `params` names, without destroying
  // anything (checked before a retirement changes anything).
  virtual void CheckCanDestroy(const MasterKeyParams& params, const VolumeId& volume) const {
    (void)params;
    (void)volume;
  }
};

// Error(kUsage) saying which options open a volume whose master key is described by `params`
// (for a source given the wrong kind of volume).
Error WrongSourceError(const MasterKeyParams& params);

// Key and passphrase files must not be readable or writable by group or others (a clear error
// says how to fix the mode) unless `allow_insecure`; "-" reads standard input.
// Reads exactly 32 bytes from `path` (more or fewer is an error naming the file).
std::unique_ptr<MasterKeySource> MakeKeyFileSource(const std::filesystem::path& path,
                                                   bool allow_insecure = false);
// Reads the passphrase from `path` (first line, without its newline).
std::unique_ptr<MasterKeySource> MakePassFileSource(const std::filesystem::path& path,
                                                    bool allow_insecure = false);
// Prompts for the passphrase on the terminal (twice when `confirm`). Error(kUsage) if there is
// no terminal.
std::unique_ptr<MasterKeySource> MakePromptSource(bool confirm);

// Runs `command` with /bin/sh -c (no terminal, standard input /dev/null, a timeout) and takes
// its standard output as the master key: 32 raw bytes or 64 hex digits, either optionally
// followed by one newline. See command_source.cc.
std::unique_ptr<MasterKeySource> MakeCommandSource(const std::string& command);

// A master key encrypted by AES key `key_label` of token `token_label` through PKCS#11 module
// `module` (dlopen'ed). The PIN comes from `pin_file` if set (first line; "-": standard input),
// else from environment variable `pin_env`. With `create_key`, NewParams creates the token key
// (AES-256, sensitive, not extractable) when it does not exist. See pkcs11_source.cc.
struct Pkcs11SourceOptions {
  std::string module, token_label, key_label;
  std::optional<std::string> pin_file;
  std::string pin_env = "ENVELOPEFS_PKCS11_PIN";
  bool create_key = false;
  bool allow_insecure = false;  // a PIN file others can read
};
std::unique_ptr<MasterKeySource> MakePkcs11Source(const Pkcs11SourceOptions& options);

// A master key encrypted (AES-256-GCM) by key `key_id` of the KMIP server `server` (HOST:PORT),
// reached over mutual TLS (tls_client.h). Opening needs `key_id` (or a key this source created
// with NewParams): the id stored in the keyring is not authenticated before the key opens it, so
// it is never used on its own (Error(kUsage)). With `create_key`, NewParams creates the key on
// the server (Create, AES-256, then Activate) instead. See kmip_source.cc.
struct KmipSourceOptions {
  std::string server;
  std::optional<std::string> key_id;
  TlsClientOptions tls;
  bool create_key = false;
};
std::unique_ptr<MasterKeySource> MakeKmipSource(const KmipSourceOptions& options);

}  // namespace envelopefs
