// The [master_key] section — see toml_master_key.h.
#include "toml_master_key.h"

#include <algorithm>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {

MasterKeyParams ParseMasterKeyParams(const toml::table& t, const std::filesystem::path& file) {
  auto fail = [&](const std::string& what) {
    return Error(ErrorKind::kConfig, file.string() + ": " + what);
  };
  MasterKeyParams params;
  auto source = t["master_key"]["source"].value<std::string>();
  if (!source) throw fail("missing [master_key] source");
  if (*source == "keyfile") {
    params.kind = MasterKeyKind::kKeyFile;
    return params;
  }
  if (*source != "passphrase") throw fail("unknown [master_key] source \"" + *source + "\"");
  params.kind = MasterKeyKind::kPassphrase;
  auto kdf = t["master_key"]["kdf"].value<std::string>();
  // value_exact: toml++ converts floats to integers, undefined behaviour when out of range.
  auto ops = t["master_key"]["opslimit"].value_exact<int64_t>();
  auto mem = t["master_key"]["memlimit"].value_exact<int64_t>();
  auto salt_hex = t["master_key"]["salt"].value<std::string>();
  auto salt = salt_hex ? FromHex(*salt_hex) : std::nullopt;
  if (!kdf || *kdf != "argon2id" || !ops || !mem || *ops < 1 || *mem < 1 || !salt ||
      salt->size() != 16) {
    throw fail("invalid [master_key] passphrase parameters");
  }
  KdfParams k;
  k.opslimit = static_cast<uint64_t>(*ops);
  k.memlimit = static_cast<uint64_t>(*mem);
  std::copy(salt->begin(), salt->end(), k.salt.begin());
  if (!k.Bounded()) throw fail("invalid [master_key] passphrase parameters (Argon2id limits)");
  params.kdf = k;
  return params;
}

}  // namespace envelopefs
