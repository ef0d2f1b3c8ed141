// Keyring — see keyring.h. The TOML layout is documented in envelopefs-format(5).
#include "envelopefs/keyring.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "atomic_file.h"
#include "canonical_bytes.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "toml_time.h"

namespace envelopefs {

namespace {

constexpr size_t kMaxKeyringSize = 1 << 20;
constexpr char kWrapLabel[] = "envelopefs keyring wrap v1";
constexpr char kMacLabel[] = "envelopefs keyring mac v1";
constexpr char kCheckLabel[] = "envelopefs keyring check v1";
constexpr char kVolumeKeyAad[] = "envelopefs volume key v1";
constexpr char kKekAad[] = "envelopefs kek v1";
constexpr char kMacDomain[] = "envelopefs keyring v1";
constexpr size_t kWrappedSize = kGcmNonceSize + kKeySize + kGcmTagSize;

// Keys derived from the master key for the keyring.
struct KeyringKeys {
  SecureBytes wrap;
  SecureBytes mac;
  SecureBytes check;
  explicit KeyringKeys(const SecureBytes& master)
      : wrap(DeriveKey(master.span(), kWrapLabel)),
        mac(DeriveKey(master.span(), kMacLabel)),
        check(DeriveKey(master.span(), kCheckLabel)) {}
};

// Concatenates byte strings (the associated data of the keyring's wraps).
std::vector<uint8_t> Concat(std::initializer_list<std::span<const uint8_t>> parts) {
  size_t total = 0;
  for (auto p : parts) total += p.size();
  std::vector<uint8_t> out(total);
  size_t at = 0;
  for (auto p : parts) {
    if (!p.empty()) std::memcpy(out.data() + at, p.data(), p.size());
    at += p.size();
  }
  return out;
}

std::vector<uint8_t> KekAad(const VolumeConfig& config, uint32_t id, uint32_t version) {
  uint8_t b[8];
  StoreLe32(b, id);
  StoreLe32(b + 4, version);
  return Concat({AsBytes(kKekAad), config.volume_id, b});
}

std::vector<uint8_t> VolumeKeyAad(const VolumeConfig& config) {
  return Concat({AsBytes(kVolumeKeyAad), config.volume_id});
}

std::vector<uint8_t> Wrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                          const SecureBytes& key) {
  std::vector<uint8_t> out(kWrappedSize);
  GcmNonce nonce = RandomNonce();
  std::copy(nonce.begin(), nonce.end(), out.begin());
  ThreadAead().Seal(wrap_key.span(), nonce, aad, key.span(),
                    std::span(out).subspan(kGcmNonceSize, kKeySize),
                    std::span(out).subspan<kGcmNonceSize + kKeySize, kGcmTagSize>());
  return out;
}

std::optional<SecureBytes> Unwrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                                  std::span<const uint8_t> wrapped) {
  if (wrapped.size() != kWrappedSize) return std::nullopt;
  SecureBytes key(kKeySize);
  if (!ThreadAead().Open(wrap_key.span(), wrapped.subspan<0, kGcmNonceSize>(), aad,
                         wrapped.subspan(kGcmNonceSize, kKeySize),
                         wrapped.subspan<kGcmNonceSize + kKeySize, kGcmTagSize>(),
                         key.mutable_span())) {
    return std::nullopt;
  }
  return key;
}

KekState ParseState(const std::string& s, const std::filesystem::path& file) {
  if (s == "active") return KekState::kActive;
  if (s == "decrypt-only") return KekState::kDecryptOnly;
  if (s == "retired") return KekState::kRetired;
  throw Error(ErrorKind::kConfig, file.string() + ": unknown KEK state \"" + s + "\"");
}

// The serialized (on-disk) form of one KEK record, as the MAC sees it.
struct KekRecord {
  KekInfo info;
  std::vector<uint8_t> wrapped;  // empty when retired
};

// The canonical byte string the keyring MAC covers.
std::vector<uint8_t> MacInput(const VolumeConfig& config, std::span<const uint8_t> check,
                              std::span<const uint8_t> volume_key,
                              const std::vector<KekRecord>& keks) {
  std::vector<uint8_t> out;
  AppendField(out, AsBytes(kMacDomain));
  AppendField(out, config.AuthenticatedBytes());
  AppendField(out, check);
  AppendField(out, volume_key);
  AppendU64(out, keks.size());
  for (const KekRecord& k : keks) {
    AppendU64(out, k.info.id);
    AppendU64(out, k.info.version);
    AppendU64(out, static_cast<uint64_t>(k.info.created_unix));
    AppendU64(out, static_cast<uint64_t>(k.info.state));
    AppendField(out, k.wrapped);
  }
  return out;
}

std::vector<uint8_t> B64Field(const toml::node_view<const toml::node>& node, const char* what,
                              const std::filesystem::path& file) {
  auto text = node.value<std::string>();
  std::optional<std::vector<uint8_t>> bytes;
  if (text) bytes = FromBase64Url(*text);
  if (!bytes) throw Error(ErrorKind::kConfig, file.string() + ": missing or invalid " + what);
  return *bytes;
}

}  // namespace

const char* KekStateName(KekState state) {
  switch (state) {
    case KekState::kActive:
      return "active";
    case KekState::kDecryptOnly:
      return "decrypt-only";
    case KekState::kRetired:
      return "retired";
  }
  return "unknown";
}

namespace {

uint32_t RandomKekId() {
  uint32_t id = 0;
  RandomBytes(std::span(reinterpret_cast<uint8_t*>(&id), sizeof id));
  return id;
}

}  // namespace

Keyring Keyring::CreateNew(int64_t now_unix) {
  Keyring k;
  k.entries_.push_back(
      Entry{KekInfo{RandomKekId(), 1, now_unix, KekState::kActive}, SecureBytes::Random(kKeySize)});
  k.volume_key_ = SecureBytes::Random(kKeySize);
  return k;
}

Keyring Keyring::Load(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                      const SecureBytes& master_key) {
  return LoadFile(cipher_dir / kKeyringFileName, config, master_key);
}

void Keyring::Save(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                   const SecureBytes& master_key) const {
  SaveFile(cipher_dir / kKeyringFileName, config, master_key);
}

Keyring Keyring::LoadFile(const std::filesystem::path& file, const VolumeConfig& config,
                          const SecureBytes& master_key) {
  const std::filesystem::path cipher_dir = file.parent_path();
  auto fail = [&file](const std::string& what) -> Error {
    return Error(ErrorKind::kConfig, file.string() + ": " + what);
  };
  std::optional<std::string> text = ReadSmallFile(file, kMaxKeyringSize);
  if (!text) throw fail(std::string("cannot read: ") + std::strerror(errno));
  toml::table table;
  try {
    table = toml::parse(*text, file.string());
  } catch (const toml::parse_error& e) {
    throw fail(std::string("not a valid keyring (") + std::string(e.description()) + ")");
  }
  const toml::table& t = table;
  if (t["format"].value_or(int64_t{0}) != 1) throw fail("unsupported keyring format");
  auto volume_id = t["volume_id"].value<std::string>();
  auto id_bytes = volume_id ? FromHex(*volume_id) : std::nullopt;
  if (!id_bytes || !std::equal(id_bytes->begin(), id_bytes->end(), config.volume_id.begin(),
                               config.volume_id.end())) {
    throw fail(std::string("belongs to another volume (volume_id does not match ") +
               kConfigFileName + ")");
  }

  KeyringKeys keys(master_key);
  std::vector<uint8_t> check = B64Field(t["check"], "check", file);
  Sha256Digest expected_check = HmacSha256(keys.check.span(), config.volume_id);
  if (!ConstantTimeEqual(check, expected_check)) {
    throw Error(ErrorKind::kWrongKey, "wrong key or passphrase for volume " + cipher_dir.string());
  }
  std::vector<uint8_t> wrapped_volume_key = B64Field(t["volume_key"], "volume_key", file);
  std::vector<uint8_t> mac = B64Field(t["mac"], "mac", file);

  std::vector<KekRecord> records;
  const toml::array* keks = t["kek"].as_array();
  if (keks == nullptr || keks->empty()) throw fail("no KEKs");
  for (const toml::node& node : *keks) {
    const toml::table* kt = node.as_table();
    if (kt == nullptr) throw fail("invalid [[kek]] entry");
    const toml::table& e = *kt;
    KekRecord r;
    auto id = e["id"].value<int64_t>();
    auto version = e["version"].value<int64_t>();
    auto created = e["created"].value<toml::date_time>();
    auto state = e["state"].value<std::string>();
    if (!id || !version || !created || !state || *id < 0 || *id > UINT32_MAX || *version < 1 ||
        *version > UINT32_MAX) {
      throw fail("invalid [[kek]] entry");
    }
    r.info = KekInfo{static_cast<uint32_t>(*id), static_cast<uint32_t>(*version),
                     FromTomlTime(*created), ParseState(*state, file)};
    if (r.info.state != KekState::kRetired) r.wrapped = B64Field(e["wrapped"], "wrapped KEK", file);
    records.push_back(std::move(r));
  }

  Sha256Digest expected_mac =
      HmacSha256(keys.mac.span(), MacInput(config, check, wrapped_volume_key, records));
  if (!ConstantTimeEqual(mac, expected_mac)) {
    throw fail("damaged or edited (authentication failed)");
  }

  Keyring k;
  auto volume_key = Unwrap(keys.wrap, VolumeKeyAad(config), wrapped_volume_key);
  if (!volume_key) throw fail("volume key does not authenticate");
  k.volume_key_ = std::move(*volume_key);
  size_t active = 0;
  for (const KekRecord& r : records) {
    Entry entry{r.info, {}};
    if (r.info.state != KekState::kRetired) {
      auto kek = Unwrap(keys.wrap, KekAad(config, r.info.id, r.info.version), r.wrapped);
      if (!kek)
        throw fail("KEK version " + std::to_string(r.info.version) + " does not authenticate");
      entry.key = std::move(*kek);
    }
    if (r.info.state == KekState::kActive) ++active;
    k.entries_.push_back(std::move(entry));
  }
  if (active != 1) throw fail("must have exactly one active KEK version");
  std::sort(k.entries_.begin(), k.entries_.end(),
            [](const Entry& a, const Entry& b) { return a.info.version < b.info.version; });
  for (size_t i = 1; i < k.entries_.size(); ++i) {
    if (k.entries_[i].info.version == k.entries_[i - 1].info.version) {
      throw fail("duplicate KEK version");
    }
  }
  return k;
}

void Keyring::SaveFile(const std::filesystem::path& file, const VolumeConfig& config,
                       const SecureBytes& master_key) const {
  KeyringKeys keys(master_key);
  Sha256Digest check = HmacSha256(keys.check.span(), config.volume_id);
  std::vector<uint8_t> wrapped_volume_key = Wrap(keys.wrap, VolumeKeyAad(config), volume_key_);
  std::vector<KekRecord> records;
  for (const Entry& e : entries_) {
    KekRecord r{e.info, {}};
    if (e.info.state != KekState::kRetired) {
      r.wrapped = Wrap(keys.wrap, KekAad(config, e.info.id, e.info.version), e.key);
    }
    records.push_back(std::move(r));
  }
  Sha256Digest mac =
      HmacSha256(keys.mac.span(), MacInput(config, check, wrapped_volume_key, records));

  toml::array keks;
  for (const KekRecord& r : records) {
    toml::table e{{"id", int64_t{r.info.id}},
                  {"version", int64_t{r.info.version}},
                  {"created", ToTomlTime(r.info.created_unix)},
                  {"state", KekStateName(r.info.state)}};
    if (!r.wrapped.empty()) e.insert("wrapped", ToBase64Url(r.wrapped));
    keks.push_back(std::move(e));
  }
  toml::table root{{"format", 1},
                   {"volume_id", ToHex(config.volume_id)},
                   {"check", ToBase64Url(check)},
                   {"volume_key", ToBase64Url(wrapped_volume_key)},
                   {"mac", ToBase64Url(mac)},
                   {"kek", std::move(keks)}};
  std::ostringstream out;
  out << "# envelopefs keyring (see envelopefs-format(5)). Authenticated: do not edit.\n"
      << root << "\n";
  WriteFileAtomically(file, out.str(), 0600);
}

std::vector<KekInfo> Keyring::keks() const {
  std::vector<KekInfo> out;
  for (const Entry& e : entries_) out.push_back(e.info);
  return out;
}

KekInfo Keyring::active() const {
  for (const Entry& e : entries_) {
    if (e.info.state == KekState::kActive) return e.info;
  }
  throw Error(ErrorKind::kConfig, "keyring has no active KEK");
}

const SecureBytes* Keyring::kek(uint32_t id, uint32_t version) const {
  for (const Entry& e : entries_) {
    if (e.info.id == id && e.info.version == version && e.info.state != KekState::kRetired) {
      return &e.key;
    }
  }
  return nullptr;
}

KekInfo Keyring::Rotate(int64_t now_unix) {
  uint32_t next = 1;
  for (Entry& e : entries_) {
    if (e.info.state == KekState::kActive) e.info.state = KekState::kDecryptOnly;
    next = std::max(next, e.info.version + 1);
  }
  entries_.push_back(Entry{KekInfo{RandomKekId(), next, now_unix, KekState::kActive},
                           SecureBytes::Random(kKeySize)});
  return entries_.back().info;
}

void Keyring::Retire(uint32_t version) {
  for (Entry& e : entries_) {
    if (e.info.version != version) continue;
    if (e.info.state == KekState::kActive) {
      throw Error(ErrorKind::kState,
                  "version " + std::to_string(version) + " is active; rotate first");
    }
    e.info.state = KekState::kRetired;
    e.key = SecureBytes();  // sodium_free wipes the key material
    return;
  }
  throw Error(ErrorKind::kUsage, "no KEK version " + std::to_string(version));
}

}  // namespace envelopefs
