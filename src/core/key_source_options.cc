// The key-source options of envelopefs and envelopectl — see key_source_options.h.
#include "envelopefs/key_source_options.h"

#include <array>

#include "envelopefs/error.h"
#include "envelopefs/recovery_key.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

namespace {

constexpr char kFile[] = "a file name";
constexpr char kCommand[] = "a command";
constexpr char kPath[] = "a path";
constexpr char kLabel[] = "a label";
constexpr char kHostPort[] = "HOST:PORT";
constexpr char kKeyId[] = "a key id";

// The current key's options first: kCurrentKey is a prefix of kCurrentAndNewKey.
constexpr std::array<KeySourceOptionSpec, 29> kTable = {{
    {"keyfile", kFile, kKeyfileOption},
    {"passfile", kFile, kPassfileOption},
    {"insecure-keyfile", nullptr, kInsecureKeyfileOption},
    {"master-command", kCommand, kMasterCommandOption},
    {"pkcs11-module", kPath, kPkcs11ModuleOption},
    {"pkcs11-token", kLabel, kPkcs11TokenOption},
    {"pkcs11-key", kLabel, kPkcs11KeyOption},
    {"pin-file", kFile, kPinFileOption},
    {"kmip-server", kHostPort, kKmipServerOption},
    {"kmip-key-id", kKeyId, kKmipKeyIdOption},
    {"tls-cert", kFile, kTlsCertOption},
    {"tls-key", kFile, kTlsKeyOption},
    {"tls-ca", kFile, kTlsCaOption},
    {"recovery-key", kFile, kRecoveryKeyOption},
    {"new-keyfile", kFile, kNewKeyfileOption},
    {"new-passfile", kFile, kNewPassfileOption},
    {"new-master-command", kCommand, kNewMasterCommandOption},
    {"new-pkcs11-module", kPath, kNewPkcs11ModuleOption},
    {"new-pkcs11-token", kLabel, kNewPkcs11TokenOption},
    {"new-pkcs11-key", kLabel, kNewPkcs11KeyOption},
    {"new-pin-file", kFile, kNewPinFileOption},
    {"pkcs11-create-key", nullptr, kPkcs11CreateKeyOption},
    {"new-kmip-server", kHostPort, kNewKmipServerOption},
    {"new-kmip-key-id", kKeyId, kNewKmipKeyIdOption},
    {"new-tls-cert", kFile, kNewTlsCertOption},
    {"new-tls-key", kFile, kNewTlsKeyOption},
    {"new-tls-ca", kFile, kNewTlsCaOption},
    {"kmip-create-key", nullptr, kKmipCreateKeyOption},
    {"new-recovery-key", nullptr, kNewRecoveryKeyOption},
}};
constexpr size_t kCurrentKeyOptions = 14;

const KeySourceOptionSpec* Find(int code) {
  for (const KeySourceOptionSpec& spec : kTable) {
    if (spec.code == code) return &spec;
  }
  return nullptr;
}

bool IsStdin(const std::optional<std::string>& file) { return file && *file == "-"; }

// Checks one source's options; `prefix` is "" or "new-" (for the messages).
void ValidateChoice(const KeySourceChoice& c, const std::string& prefix) {
  const int given = (c.keyfile ? 1 : 0) + (c.passfile ? 1 : 0) + (c.command ? 1 : 0) +
                    (c.HasPkcs11() ? 1 : 0) + (c.HasKmip() ? 1 : 0) + (c.recovery_key ? 1 : 0);
  if (given > 1) {
    throw Error(ErrorKind::kUsage, "--" + prefix + "keyfile, --" + prefix + "passfile, --" +
                                       prefix + "master-command, --" + prefix + "pkcs11-*, --" +
                                       prefix + "kmip-* and --" + prefix +
                                       "recovery-key are mutually exclusive");
  }
  if (c.HasKmip() && !(c.kmip_server && c.tls_cert && c.tls_key && c.tls_ca)) {
    throw Error(ErrorKind::kUsage, "a KMIP master key needs --" + prefix +
                                       "kmip-server HOST:PORT, --" + prefix + "tls-cert FILE, --" +
                                       prefix + "tls-key FILE and --" + prefix + "tls-ca FILE");
  }
  if (c.kmip_server) ParseHostPort(*c.kmip_server, "--" + prefix + "kmip-server");
  if (c.HasPkcs11() && !(c.pkcs11_module && c.pkcs11_token && c.pkcs11_key)) {
    throw Error(ErrorKind::kUsage, "a PKCS#11 master key needs --" + prefix +
                                       "pkcs11-module PATH, --" + prefix +
                                       "pkcs11-token LABEL and --" + prefix + "pkcs11-key LABEL");
  }
}

std::unique_ptr<MasterKeySource> SourceOf(const KeySourceChoice& c, bool confirm, bool insecure,
                                          bool create_key, bool kmip_create_key,
                                          const char* pin_env) {
  if (c.keyfile) return MakeKeyFileSource(*c.keyfile, insecure);
  if (c.passfile) return MakePassFileSource(*c.passfile, insecure);
  if (c.command) return MakeCommandSource(*c.command);
  if (c.recovery_key) return MakeRecoveryKeyFileSource(*c.recovery_key, insecure);
  if (c.HasPkcs11()) {
    Pkcs11SourceOptions o;
    o.module = c.pkcs11_module.value_or("");
    o.token_label = c.pkcs11_token.value_or("");
    o.key_label = c.pkcs11_key.value_or("");
    o.pin_file = c.pin_file;
    o.pin_env = pin_env;
    o.create_key = create_key;
    o.allow_insecure = insecure;
    return MakePkcs11Source(o);
  }
  if (c.HasKmip()) {
    KmipSourceOptions o;
    o.server = c.kmip_server.value_or("");
    o.key_id = c.kmip_key_id;
    o.tls.cert_file = c.tls_cert.value_or("");
    o.tls.key_file = c.tls_key.value_or("");
    o.tls.ca_file = c.tls_ca.value_or("");
    o.create_key = kmip_create_key;
    return MakeKmipSource(o);
  }
  return MakePromptSource(confirm);
}

}  // namespace

const char* KeySourceChoice::KindName() const {
  if (keyfile) return "keyfile";
  if (command) return "command";
  if (HasPkcs11()) return "pkcs11";
  if (HasKmip()) return "kmip";
  if (recovery_key) return "recovery";
  return "passphrase";
}

std::span<const KeySourceOptionSpec> KeySourceOptionTable(KeySourceOptionSet set) {
  const std::span<const KeySourceOptionSpec> all(kTable);
  return set == KeySourceOptionSet::kCurrentKey ? all.first(kCurrentKeyOptions) : all;
}

std::vector<option> LongOptionsWithKeySource(KeySourceOptionSet set, std::span<const option> own) {
  std::vector<option> out;
  for (const KeySourceOptionSpec& spec : KeySourceOptionTable(set)) {
    out.push_back(
        {spec.name, spec.value != nullptr ? required_argument : no_argument, nullptr, spec.code});
  }
  out.insert(out.end(), own.begin(), own.end());
  out.push_back({nullptr, 0, nullptr, 0});
  return out;
}

bool KeySourceOptions::Apply(int code, const std::string& value) {
  const KeySourceOptionSpec* spec = Find(code);
  if (spec == nullptr) return false;
  if (spec->value != nullptr && value.empty()) {
    throw Error(ErrorKind::kUsage, std::string("option --") + spec->name + " needs " + spec->value);
  }
  if (spec->value == kLabel && !Pkcs11Params::IsValidLabel(value)) {
    throw Error(ErrorKind::kUsage, std::string("option --") + spec->name +
                                       ": a PKCS#11 label is 1 to 32 printable ASCII characters "
                                       "without quotes or backslashes");
  }
  if (spec->value == kKeyId && !KmipParams::IsValidKeyId(value)) {
    throw Error(ErrorKind::kUsage, std::string("option --") + spec->name +
                                       ": a KMIP key id is 1 to 64 printable ASCII characters "
                                       "without quotes or backslashes");
  }
  if (spec->value == kHostPort) ParseHostPort(value, std::string("--") + spec->name);
  switch (code) {
    case kKeyfileOption:
      current.keyfile = value;
      break;
    case kPassfileOption:
      current.passfile = value;
      break;
    case kInsecureKeyfileOption:
      insecure_keyfile = true;
      break;
    case kMasterCommandOption:
      current.command = value;
      break;
    case kPkcs11ModuleOption:
      current.pkcs11_module = value;
      break;
    case kPkcs11TokenOption:
      current.pkcs11_token = value;
      break;
    case kPkcs11KeyOption:
      current.pkcs11_key = value;
      break;
    case kPinFileOption:
      current.pin_file = value;
      break;
    case kNewKeyfileOption:
      next.keyfile = value;
      break;
    case kNewPassfileOption:
      next.passfile = value;
      break;
    case kNewMasterCommandOption:
      next.command = value;
      break;
    case kNewPkcs11ModuleOption:
      next.pkcs11_module = value;
      break;
    case kNewPkcs11TokenOption:
      next.pkcs11_token = value;
      break;
    case kNewPkcs11KeyOption:
      next.pkcs11_key = value;
      break;
    case kNewPinFileOption:
      next.pin_file = value;
      break;
    case kPkcs11CreateKeyOption:
      pkcs11_create_key = true;
      break;
    case kKmipServerOption:
      current.kmip_server = value;
      break;
    case kKmipKeyIdOption:
      current.kmip_key_id = value;
      break;
    case kTlsCertOption:
      current.tls_cert = value;
      break;
    case kTlsKeyOption:
      current.tls_key = value;
      break;
    case kTlsCaOption:
      current.tls_ca = value;
      break;
    case kNewKmipServerOption:
      next.kmip_server = value;
      break;
    case kNewKmipKeyIdOption:
      next.kmip_key_id = value;
      break;
    case kNewTlsCertOption:
      next.tls_cert = value;
      break;
    case kNewTlsKeyOption:
      next.tls_key = value;
      break;
    case kNewTlsCaOption:
      next.tls_ca = value;
      break;
    case kKmipCreateKeyOption:
      kmip_create_key = true;
      break;
    case kRecoveryKeyOption:
      current.recovery_key = value;
      break;
    case kNewRecoveryKeyOption:
      new_recovery_key = true;
      break;
  }
  return true;
}

void KeySourceOptions::Validate() const {
  if (current.keyfile && current.passfile) {
    throw Error(ErrorKind::kUsage, "--keyfile and --passfile are mutually exclusive");
  }
  if (next.keyfile && next.passfile) {
    throw Error(ErrorKind::kUsage, "--new-keyfile and --new-passfile are mutually exclusive");
  }
  ValidateChoice(current, "");
  ValidateChoice(next, "new-");
  if (new_recovery_key && next.Given()) {
    throw Error(ErrorKind::kUsage,
                "--new-recovery-key makes the new master key: give it without other --new-* "
                "options");
  }
  const int stdin_readers = (IsStdin(current.recovery_key) ? 1 : 0) +
                            (IsStdin(current.keyfile) ? 1 : 0) +
                            (IsStdin(current.passfile) ? 1 : 0) +
                            (IsStdin(current.pin_file) ? 1 : 0) + (IsStdin(next.keyfile) ? 1 : 0) +
                            (IsStdin(next.passfile) ? 1 : 0) + (IsStdin(next.pin_file) ? 1 : 0);
  if (stdin_readers > 1) {
    throw Error(ErrorKind::kUsage,
                "only one of the current and the new key can be read from stdin (\"-\"); give "
                "the other as a file");
  }
  if (pkcs11_create_key && !current.HasPkcs11() && !next.HasPkcs11()) {
    throw Error(ErrorKind::kUsage,
                "--pkcs11-create-key needs the --pkcs11-* (init) or --new-pkcs11-* "
                "(keys change-master) options");
  }
  if (kmip_create_key && !current.HasKmip() && !next.HasKmip()) {
    throw Error(ErrorKind::kUsage,
                "--kmip-create-key needs the --kmip-* (init) or --new-kmip-* (keys change-master) "
                "options");
  }
  if (kmip_create_key && (current.kmip_key_id || next.kmip_key_id)) {
    throw Error(ErrorKind::kUsage,
                "--kmip-create-key creates the key: give it without --kmip-key-id");
  }
}

std::unique_ptr<MasterKeySource> KeySourceOptions::KeySource(bool confirm) const {
  // A key is created only for a source being set up (init: the current one).
  return SourceOf(current, confirm, insecure_keyfile, pkcs11_create_key, kmip_create_key,
                  "ENVELOPEFS_PKCS11_PIN");
}

std::unique_ptr<MasterKeySource> KeySourceOptions::NewKeySource() const {
  return SourceOf(next, /*confirm=*/true, insecure_keyfile, pkcs11_create_key, kmip_create_key,
                  "ENVELOPEFS_NEW_PKCS11_PIN");
}

}  // namespace envelopefs
