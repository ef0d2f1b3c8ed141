// VolumeConfig — see volume_config.h. The TOML layout is documented in envelopefs-format(5).
#include "envelopefs/volume_config.h"

#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sstream>

#include "atomic_file.h"
#include "canonical_bytes.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/file_format.h"
#include "toml_guard.h"
#include "toml_master_key.h"
#include "toml_time.h"

namespace envelopefs {

namespace {

constexpr size_t kMaxConfigSize = 64 * 1024;
constexpr char kLegacyAuthLabel[] = "envelopefs config v1";
constexpr char kIdentityLabel[] = "envelopefs volume v2";

[[noreturn]] void Fail(const std::filesystem::path& file, const std::string& what) {
  throw Error(ErrorKind::kConfig, file.string() + ": " + what);
}

template <typename T>
T Required(const toml::table& table, const char* section, const char* key,
           const std::filesystem::path& file) {
  // value_exact: no conversions (toml++'s float -> integer conversion of an out-of-range
  // float is undefined behaviour; found by fuzz_volume_config).
  auto value = table[section][key].template value_exact<T>();
  if (!value) Fail(file, std::string("missing or invalid [") + section + "] " + key);
  return *value;
}

template <size_t N>
std::array<uint8_t, N> HexField(const std::string& hex, const char* what,
                                const std::filesystem::path& file) {
  auto bytes = FromHex(hex);
  if (!bytes || bytes->size() != N) Fail(file, std::string("invalid ") + what);
  std::array<uint8_t, N> out{};
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

}  // namespace

VolumeConfig VolumeConfig::LoadAt(int root_fd, const std::filesystem::path& cipher_dir) {
  const std::filesystem::path file = cipher_dir / kConfigFileName;
  std::optional<std::string> text =
      ReadSmallFileIn(root_fd, kConfigFileName, kMaxConfigSize, file.string());
  if (!text) {
    Fail(file, errno == ENOENT ? "no such file: not an envelopefs volume"
               : errno == EINVAL || errno == ELOOP
                   ? "not a regular file"
                   : std::string("cannot read: ") + std::strerror(errno));
  }
  if (auto problem = TomlShapeProblem(*text)) Fail(file, "not a valid config (" + *problem + ")");
  toml::table table;
  try {
    table = toml::parse(*text, file.string());
  } catch (const toml::parse_error& e) {
    Fail(file, std::string("not a valid config (") + std::string(e.description()) + ")");
  }
  VolumeConfig c;
  int64_t version = Required<int64_t>(table, "volume", "format_version", file);
  if (version != kVolumeFormat1 && version != kVolumeFormat2) {
    Fail(file, "unsupported format version " + std::to_string(version));
  }
  c.format_version = static_cast<uint32_t>(version);
  c.volume_id =
      HexField<16>(Required<std::string>(table, "volume", "volume_id", file), "volume_id", file);
  int64_t chunk = Required<int64_t>(table, "volume", "chunk_size", file);
  if (!format::IsValidChunkSize(static_cast<uint64_t>(chunk))) {
    Fail(file, "invalid chunk_size " + std::to_string(chunk));
  }
  c.chunk_size = static_cast<uint32_t>(chunk);
  c.plaintext_names = Required<bool>(table, "volume", "plaintext_names", file);
  if (auto created = table["volume"]["created"].value<toml::date_time>()) {
    c.created_unix = FromTomlTime(*created);
  }
  if (c.format_version == kVolumeFormat1) {
    LegacyConfig legacy;
    legacy.master = ParseMasterKeyParams(table, file);
    if (legacy.master.kind != MasterKeyKind::kKeyFile &&
        legacy.master.kind != MasterKeyKind::kPassphrase) {
      Fail(file, "a format-1 config has a key file or a passphrase as [master_key] source");
    }
    // Absent: the default; present, an integer in range (anything else is refused).
    auto rotate_node = table["volume"]["rotate_after_days"];
    int64_t rotate = rotate_node ? rotate_node.value_exact<int64_t>().value_or(0) : 90;
    if (rotate < 1 || rotate > VolumePolicy::kMaxRotateAfterDays)
      Fail(file, "invalid rotate_after_days");
    legacy.policy.rotate_after_days = static_cast<uint32_t>(rotate);
    // Format 1 named the audit log by path; only "on or off" is honoured now: the log is
    // always envelopefs.audit.log in the cipher dir, never a path the config names.
    legacy.policy.audit_log = !table["volume"]["audit_log"].value_or(std::string()).empty();
    c.legacy = legacy;
  }
  return c;
}

void VolumeConfig::SaveAt(int root_fd, const std::filesystem::path& cipher_dir) const {
  if (format_version != kVolumeFormat2) {
    throw std::logic_error("VolumeConfig::SaveAt writes format 2 only");
  }
  toml::table volume{
      {"format_version", int64_t{format_version}}, {"volume_id", ToHex(volume_id)},
      {"chunk_size", int64_t{chunk_size}},         {"plaintext_names", plaintext_names},
      {"created", ToTomlTime(created_unix)},
  };
  toml::table root{{"volume", volume}};
  std::ostringstream out;
  out << "# envelopefs volume config (see envelopefs-format(5)). Authenticated by the keyring:\n"
         "# do not edit. Policy: envelopectl keys policy.\n"
      << root << "\n";
  ReplaceFileIn(root_fd, kConfigFileName, out.str(), 0600, (cipher_dir / kConfigFileName).string());
}

std::vector<uint8_t> VolumeConfig::IdentityBytes() const {
  std::vector<uint8_t> out;
  AppendField(out, AsBytes(kIdentityLabel));
  AppendU64(out, format_version);
  AppendField(out, volume_id);
  AppendU64(out, chunk_size);
  AppendU64(out, plaintext_names ? 1 : 0);
  AppendU64(out, static_cast<uint64_t>(created_unix));
  return out;
}

std::vector<uint8_t> VolumeConfig::LegacyAuthenticatedBytes() const {
  // Format 1's definition, byte for byte (it has no creation time).
  std::vector<uint8_t> out;
  AppendField(out, AsBytes(kLegacyAuthLabel));
  AppendU64(out, format_version);
  AppendField(out, volume_id);
  AppendU64(out, chunk_size);
  AppendU64(out, plaintext_names ? 1 : 0);
  AppendMasterKeyParams(out, legacy ? legacy->master : MasterKeyParams{});
  return out;
}

void AppendMasterKeyParams(std::vector<uint8_t>& out, const MasterKeyParams& params) {
  switch (params.kind) {
    case MasterKeyKind::kKeyFile:
      AppendU64(out, 1);
      break;
    case MasterKeyKind::kPassphrase:
      AppendU64(out, 2);
      break;
    case MasterKeyKind::kCommand:
      AppendU64(out, 3);
      break;
    case MasterKeyKind::kPkcs11:
      AppendU64(out, 4);
      break;
    case MasterKeyKind::kKmip:
      AppendU64(out, 5);
      break;
    case MasterKeyKind::kRecovery:
      AppendU64(out, 6);
      break;
  }
  if (params.kmip) {
    AppendField(out, AsBytes(params.kmip->key_id));
    AppendField(out, params.kmip->iv);
    AppendField(out, params.kmip->wrapped);
  }
  if (params.pkcs11) {
    AppendField(out, AsBytes(params.pkcs11->token_label));
    AppendField(out, AsBytes(params.pkcs11->key_label));
    AppendField(out, params.pkcs11->iv);
    AppendField(out, params.pkcs11->wrapped);
  }
  if (params.kdf) {
    AppendU64(out, params.kdf->opslimit);
    AppendU64(out, params.kdf->memlimit);
    AppendField(out, params.kdf->salt);
  }
}

void AppendPolicy(std::vector<uint8_t>& out, const VolumePolicy& policy) {
  AppendU64(out, policy.rotate_after_days);
  AppendU64(out, policy.audit_log ? 1 : 0);
}

}  // namespace envelopefs
