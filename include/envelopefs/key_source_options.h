// KeySourceOptions — the command-line options that say where the master key comes from, in one
// place for envelopefs and envelopectl: the option table, applying an option (as getopt_long or
// a -o mount option list delivers it), the checks of the combination, and the MasterKeySource
// the options name.
//
//   --keyfile FILE       the master key: a file of 32 random bytes ("-": standard input)
//   --passfile FILE      the passphrase on FILE's first line ("-": standard input)
//   --insecure-keyfile   accept a key, passphrase or PIN file that group or others can read
//   --master-command CMD the master key is CMD's standard output (command_source.cc)
//   --pkcs11-module PATH, --pkcs11-token LABEL, --pkcs11-key LABEL: the master key encrypted by
//                        an AES key in a PKCS#11 token (all three together)
//   --pin-file FILE      the token's PIN (first line; else ENVELOPEFS_PKCS11_PIN)
//   --new-keyfile FILE   envelopectl only (keys change-master): the new master key
//   --new-passfile FILE  envelopectl only: the new passphrase
//   --new-master-command CMD, --new-pkcs11-module PATH, --new-pkcs11-token LABEL,
//   --new-pkcs11-key LABEL, --new-pin-file FILE (else ENVELOPEFS_NEW_PKCS11_PIN): envelopectl
//                        only, the new source
//   --pkcs11-create-key  envelopectl only: create the token key of the PKCS#11 source being set
//                        up (init, change-master) if it does not exist
//   --kmip-server HOST:PORT, --kmip-key-id ID, --tls-cert FILE, --tls-key FILE, --tls-ca FILE:
//                        the master key encrypted by a KMIP server's key over mutual TLS (the
//                        key id is needed to open a volume: the keyring's is never used alone)
//   --new-kmip-server, --new-kmip-key-id, --new-tls-cert, --new-tls-key, --new-tls-ca:
//                        envelopectl only, the new source
//   --kmip-create-key    envelopectl only: create the server key of the KMIP source being set up
//   --recovery-key FILE  the volume's recovery key (its text, recovery_key.h; "-": standard input)
//   --new-recovery-key   envelopectl only: the new source is a recovery key made now and shown
//                        once (init, keys add-master)
//
// Without a key option the passphrase is asked on the terminal. The last of repeated
// options wins. Every program spells them alike: `--keyfile FILE`, `--keyfile=FILE` (and, for
// envelopefs, `-o keyfile=FILE`, see mount_options.h). Functions are stateless and thread-safe;
// a KeySourceOptions is a plain value, not synchronized.
#pragma once

#include <getopt.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/key_source.h"

namespace envelopefs {

// Which key-source options a program takes.
enum class KeySourceOptionSet {
  kCurrentKey,        // --keyfile, --passfile, --insecure-keyfile, --master-command, --pkcs11-*,
                      // --pin-file (envelopefs)
  kCurrentAndNewKey,  // and the --new-* options and --pkcs11-create-key (envelopectl)
};

// The getopt_long codes of the key-source options. A program's own option codes stay below
// kFirstKeySourceOption.
inline constexpr int kFirstKeySourceOption = 0x4b00;
enum KeySourceOptionCode : int {
  kKeyfileOption = kFirstKeySourceOption,
  kPassfileOption,
  kInsecureKeyfileOption,
  kNewKeyfileOption,
  kNewPassfileOption,
  kMasterCommandOption,
  kPkcs11ModuleOption,
  kPkcs11TokenOption,
  kPkcs11KeyOption,
  kPinFileOption,
  kNewMasterCommandOption,
  kNewPkcs11ModuleOption,
  kNewPkcs11TokenOption,
  kNewPkcs11KeyOption,
  kNewPinFileOption,
  kPkcs11CreateKeyOption,
  kKmipServerOption,
  kKmipKeyIdOption,
  kTlsCertOption,
  kTlsKeyOption,
  kTlsCaOption,
  kNewKmipServerOption,
  kNewKmipKeyIdOption,
  kNewTlsCertOption,
  kNewTlsKeyOption,
  kNewTlsCaOption,
  kKmipCreateKeyOption,
  kRecoveryKeyOption,
  kNewRecoveryKeyOption,
};

struct KeySourceOptionSpec {
  const char* name;   // the long option's name, e.g. "keyfile"
  const char* value;  // what it takes ("a file name", "a command", ...), or nullptr: a flag
  int code;           // a KeySourceOptionCode
};

// The options of `set`, in the order of the programs' help.
std::span<const KeySourceOptionSpec> KeySourceOptionTable(KeySourceOptionSet set);

// A program's getopt_long table: the options of `set`, then the program's `own` options (whose
// codes stay below kFirstKeySourceOption), then the terminating all-zero entry.
std::vector<option> LongOptionsWithKeySource(KeySourceOptionSet set, std::span<const option> own);

// One master-key source's options (the current or the new key).
struct KeySourceChoice {
  std::optional<std::string> keyfile, passfile, command;
  std::optional<std::string> pkcs11_module, pkcs11_token, pkcs11_key, pin_file;
  std::optional<std::string> kmip_server, kmip_key_id, tls_cert, tls_key, tls_ca;
  std::optional<std::string> recovery_key;  // the current source only: a file
  bool HasPkcs11() const { return pkcs11_module || pkcs11_token || pkcs11_key || pin_file; }
  bool HasKmip() const { return kmip_server || kmip_key_id || tls_cert || tls_key || tls_ca; }
  bool Given() const {
    return keyfile || passfile || command || recovery_key || HasPkcs11() || HasKmip();
  }
  // "keyfile", "passphrase", "command", "pkcs11", "kmip" or "recovery" (for messages and the
  // audit log).
  const char* KindName() const;
};

// The key-source options as given on a command line.
struct KeySourceOptions {
  KeySourceChoice current, next;
  bool insecure_keyfile = false;
  bool pkcs11_create_key = false;
  bool kmip_create_key = false;
  bool new_recovery_key = false;  // the new source is a recovery key to make (NewKeySource: no)

  // Records option `code` with its value (ignored for a flag). Returns false, changing nothing,
  // if `code` is not a KeySourceOptionCode. Throws Error(kUsage) for an empty value or a bad
  // PKCS#11 label.
  bool Apply(int code, const std::string& value);
  // Checks the combination once all options are in: one current key, one new key, the PKCS#11
  // options complete, and at most one of them read from standard input. Throws Error(kUsage)
  // with one line.
  void Validate() const;

  // True if a current key option was given (commands that work without a key never prompt).
  bool HasKey() const { return current.Given(); }
  bool HasNewKey() const { return next.Given() || new_recovery_key; }
  // The master key source: the key file, the passphrase file, or else the terminal (asking
  // twice when `confirm`, for a key being set).
  std::unique_ptr<MasterKeySource> KeySource(bool confirm) const;
  // The new master key source (the --new-* options, or else the terminal, asking twice). Not
  // for --new-recovery-key: the caller makes that key (NewRecoveryKey) and shows it.
  std::unique_ptr<MasterKeySource> NewKeySource() const;
};

}  // namespace envelopefs
