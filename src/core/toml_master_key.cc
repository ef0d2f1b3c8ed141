// The [master_key] section — see toml_master_key.h.
#include "toml_master_key.h"

#include <algorithm>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {

namespace {

template <size_t N, typename Fail>
std::array<uint8_t, N> HexBytes(const toml::node_view<const toml::node>& node, Fail& fail,
                                const char* source = "pkcs11") {
  auto hex = node.value<std::string>();
  auto bytes = hex ? FromHex(*hex) : std::nullopt;
  if (!bytes || bytes->size() != N) {
    throw fail(std::string("invalid [master_key] ") + source + " parameters");
  }
  std::array<uint8_t, N> out{};
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

template <typename Fail>
Pkcs11Params ParsePkcs11(const toml::table& t, Fail& fail) {
  const auto section = t["master_key"];
  auto mechanism = section["mechanism"].value<std::string>();
  auto token = section["token"].value<std::string>();
  auto key = section["key"].value<std::string>();
  auto label_ok = [](const std::optional<std::string>& l) {
    return l && Pkcs11Params::IsValidLabel(*l);
  };
  if (!mechanism || *mechanism != "CKM_AES_GCM" || !label_ok(token) || !label_ok(key)) {
    throw fail("invalid [master_key] pkcs11 parameters");
  }
  Pkcs11Params p;
  p.token_label = *token;
  p.key_label = *key;
  p.iv = HexBytes<12>(section["iv"], fail);
  p.wrapped = HexBytes<48>(section["wrapped"], fail);
  return p;
}

template <typename Fail>
KmipParams ParseKmip(const toml::table& t, Fail& fail) {
  const auto section = t["master_key"];
  auto mode = section["mode"].value<std::string>();
  auto key = section["key_id"].value<std::string>();
  if (!mode || *mode != "AES-GCM" || !key || !KmipParams::IsValidKeyId(*key)) {
    throw fail("invalid [master_key] kmip parameters");
  }
  KmipParams p;
  p.key_id = *key;
  p.iv = HexBytes<12>(section["iv"], fail, "kmip");
  p.wrapped = HexBytes<48>(section["wrapped"], fail, "kmip");
  return p;
}

}  // namespace

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
  if (*source == "command") {
    params.kind = MasterKeyKind::kCommand;
    return params;
  }
  if (*source == "recovery") {
    params.kind = MasterKeyKind::kRecovery;
    return params;
  }
  if (*source == "pkcs11") {
    params.kind = MasterKeyKind::kPkcs11;
    params.pkcs11 = ParsePkcs11(t, fail);
    return params;
  }
  if (*source == "kmip") {
    params.kind = MasterKeyKind::kKmip;
    params.kmip = ParseKmip(t, fail);
    return params;
  }
  if (*source != "passphrase")
    throw fail("unknown [master_key] source \"" + EscapeName(*source) + "\"");
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

toml::table MasterKeyParamsToml(const MasterKeyParams& params) {
  toml::table master;
  switch (params.kind) {
    case MasterKeyKind::kKeyFile:
      master.insert("source", "keyfile");
      break;
    case MasterKeyKind::kCommand:
      master.insert("source", "command");
      break;
    case MasterKeyKind::kRecovery:
      master.insert("source", "recovery");
      break;
    case MasterKeyKind::kPkcs11:
      master.insert("source", "pkcs11");
      master.insert("mechanism", "CKM_AES_GCM");
      master.insert("token", params.pkcs11->token_label);
      master.insert("key", params.pkcs11->key_label);
      master.insert("iv", ToHex(params.pkcs11->iv));
      master.insert("wrapped", ToHex(params.pkcs11->wrapped));
      break;
    case MasterKeyKind::kKmip:
      master.insert("source", "kmip");
      master.insert("mode", "AES-GCM");
      master.insert("key_id", params.kmip->key_id);
      master.insert("iv", ToHex(params.kmip->iv));
      master.insert("wrapped", ToHex(params.kmip->wrapped));
      break;
    case MasterKeyKind::kPassphrase:
      master.insert("source", "passphrase");
      master.insert("kdf", "argon2id");
      master.insert("opslimit", static_cast<int64_t>(params.kdf->opslimit));
      master.insert("memlimit", static_cast<int64_t>(params.kdf->memlimit));
      master.insert("salt", ToHex(params.kdf->salt));
      break;
  }
  return master;
}

}  // namespace envelopefs
