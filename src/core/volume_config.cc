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
#include "toml_time.h"

namespace envelopefs {

namespace {

constexpr size_t kMaxConfigSize = 64 * 1024;
constexpr char kAuthLabel[] = "envelopefs config v1";

[[noreturn]] void Fail(const std::filesystem::path& file, const std::string& what) {
  throw Error(ErrorKind::kConfig, file.string() + ": " + what);
}

template <typename T>
T Required(const toml::table& table, const char* section, const char* key,
           const std::filesystem::path& file) {
  auto value = table[section][key].value<T>();
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

VolumeConfig VolumeConfig::Load(const std::filesystem::path& cipher_dir) {
  const std::filesystem::path file = cipher_dir / kConfigFileName;
  std::optional<std::string> text = ReadSmallFile(file, kMaxConfigSize);
  if (!text) {
    Fail(file, errno == ENOENT ? "no such file: not an envelopefs volume"
                               : std::string("cannot read: ") + std::strerror(errno));
  }
  toml::table table;
  try {
    table = toml::parse(*text, file.string());
  } catch (const toml::parse_error& e) {
    Fail(file, std::string("not a valid config (") + std::string(e.description()) + ")");
  }
  VolumeConfig c;
  int64_t version = Required<int64_t>(table, "volume", "format_version", file);
  if (version != 1) Fail(file, "unsupported format version " + std::to_string(version));
  c.format_version = 1;
  c.volume_id =
      HexField<16>(Required<std::string>(table, "volume", "volume_id", file), "volume_id", file);
  int64_t chunk = Required<int64_t>(table, "volume", "chunk_size", file);
  if (chunk < format::kMinChunkSize || chunk > format::kMaxChunkSize || chunk % 4096 != 0) {
    Fail(file, "invalid chunk_size " + std::to_string(chunk));
  }
  c.chunk_size = static_cast<uint32_t>(chunk);
  c.plaintext_names = Required<bool>(table, "volume", "plaintext_names", file);
  if (auto created = table["volume"]["created"].value<toml::date_time>()) {
    c.created_unix = FromTomlTime(*created);
  }
  int64_t rotate = table["volume"]["rotate_after_days"].value_or(int64_t{90});
  if (rotate < 1 || rotate > 36500) Fail(file, "invalid rotate_after_days");
  c.rotate_after_days = static_cast<uint32_t>(rotate);
  c.audit_log = table["volume"]["audit_log"].value_or(std::string());

  std::string source = Required<std::string>(table, "master_key", "source", file);
  if (source == "keyfile") {
    c.master_key_kind = MasterKeyKind::kKeyFile;
  } else if (source == "passphrase") {
    c.master_key_kind = MasterKeyKind::kPassphrase;
    if (Required<std::string>(table, "master_key", "kdf", file) != "argon2id") {
      Fail(file, "unsupported [master_key] kdf");
    }
    KdfParams kdf;
    int64_t ops = Required<int64_t>(table, "master_key", "opslimit", file);
    int64_t mem = Required<int64_t>(table, "master_key", "memlimit", file);
    if (ops < 1 || ops > 1000 || mem < 8192 || mem > (int64_t{16} << 30)) {
      Fail(file, "invalid Argon2id limits");
    }
    kdf.opslimit = static_cast<uint64_t>(ops);
    kdf.memlimit = static_cast<uint64_t>(mem);
    kdf.salt = HexField<16>(Required<std::string>(table, "master_key", "salt", file), "salt", file);
    c.kdf = kdf;
  } else {
    Fail(file, "unknown [master_key] source \"" + source + "\"");
  }
  return c;
}

void VolumeConfig::Save(const std::filesystem::path& cipher_dir) const {
  toml::table volume{
      {"format_version", int64_t{format_version}},
      {"volume_id", ToHex(volume_id)},
      {"chunk_size", int64_t{chunk_size}},
      {"plaintext_names", plaintext_names},
      {"created", ToTomlTime(created_unix)},
      {"rotate_after_days", int64_t{rotate_after_days}},
      {"audit_log", audit_log},
  };
  toml::table master;
  if (master_key_kind == MasterKeyKind::kKeyFile) {
    master.insert("source", "keyfile");
  } else {
    master.insert("source", "passphrase");
    master.insert("kdf", "argon2id");
    master.insert("opslimit", static_cast<int64_t>(kdf->opslimit));
    master.insert("memlimit", static_cast<int64_t>(kdf->memlimit));
    master.insert("salt", ToHex(kdf->salt));
  }
  toml::table root{{"volume", volume}, {"master_key", master}};
  std::ostringstream out;
  out << "# envelopefs volume config (see envelopefs-format(5)). The [volume] policy keys\n"
         "# rotate_after_days and audit_log may be edited; the other fields are authenticated\n"
         "# by the keyring.\n"
      << root << "\n";
  WriteFileAtomically(cipher_dir / kConfigFileName, out.str(), 0600);
}

std::vector<uint8_t> VolumeConfig::AuthenticatedBytes() const {
  std::vector<uint8_t> out;
  AppendField(out, AsBytes(kAuthLabel));
  AppendU64(out, format_version);
  AppendField(out, volume_id);
  AppendU64(out, chunk_size);
  AppendU64(out, plaintext_names ? 1 : 0);
  AppendU64(out, master_key_kind == MasterKeyKind::kKeyFile ? 1 : 2);
  if (kdf) {
    AppendU64(out, kdf->opslimit);
    AppendU64(out, kdf->memlimit);
    AppendField(out, kdf->salt);
  }
  return out;
}

}  // namespace envelopefs
