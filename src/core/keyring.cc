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
#include "envelopefs/file_format.h"
#include "envelopefs/key_policy.h"
#include "keyring_wrap.h"
#include "toml_guard.h"
#include "toml_master_key.h"
#include "toml_time.h"

namespace envelopefs {

using namespace keyring_wrap;

namespace {

constexpr size_t kMaxKeyringSize = 1 << 20;
constexpr char kVolumeKeyAad[] = "envelopefs volume key v1";
constexpr char kKekAad[] = "envelopefs kek v1";
constexpr char kMacDomainV1[] = "envelopefs keyring v1";
constexpr char kMacDomainV2[] = "envelopefs keyring v2";
constexpr char kMacDomainV3[] = "envelopefs keyring v3";
// The most a format-1 policy (unauthenticated, in the config) may stretch the rotation period.
constexpr uint32_t kLegacyMaxRotateAfterDays = 90;

std::vector<uint8_t> KekAad(const VolumeConfig& config, uint32_t id, uint32_t version) {
  uint8_t b[8];
  StoreLe32(b, id);
  StoreLe32(b + 4, version);
  return Concat({AsBytes(kKekAad), config.volume_id, b});
}

std::vector<uint8_t> VolumeKeyAad(const VolumeConfig& config) {
  return Concat({AsBytes(kVolumeKeyAad), config.volume_id});
}

KekState ParseState(const std::string& s, const std::filesystem::path& file) {
  if (s == "active") return KekState::kActive;
  if (s == "decrypt-only") return KekState::kDecryptOnly;
  if (s == "retired") return KekState::kRetired;
  throw Error(ErrorKind::kConfig, file.string() + ": unknown KEK state \"" + s + "\"");
}

// The canonical byte string the keyring MAC covers. Format 1: domain, the config's
// authenticated fields (with the master-key parameters), check, volume key, KEKs. Format 2
// adds the generation, the master-key parameters and the policy, and binds the config's
// identity (format 2 definition) instead. Format 3 has master slots (each: number, creation
// time, parameters, wrapped keyring key) and the master keys pending destruction where format 2
// has the master-key parameters.
struct MacFields {
  int format;
  const VolumeConfig& config;
  uint64_t generation;
  const MasterKeyParams* master;  // format 2
  const VolumePolicy* policy;
  std::span<const uint8_t> check;
  std::span<const uint8_t> volume_key;
  std::span<const MasterSlot> slots = {};         // format 3
  std::span<const MasterKeyParams> pending = {};  // format 3
};

std::vector<uint8_t> MacInput(const MacFields& f, std::span<const StoredKek> keks) {
  std::vector<uint8_t> out;
  if (f.format == 1) {
    AppendField(out, AsBytes(kMacDomainV1));
    AppendField(out, f.config.LegacyAuthenticatedBytes());
  } else if (f.format == 2) {
    AppendField(out, AsBytes(kMacDomainV2));
    AppendField(out, f.config.IdentityBytes());
    AppendU64(out, f.generation);
    AppendMasterKeyParams(out, *f.master);
    AppendPolicy(out, *f.policy);
  } else {
    AppendField(out, AsBytes(kMacDomainV3));
    AppendField(out, f.config.IdentityBytes());
    AppendU64(out, f.generation);
    AppendPolicy(out, *f.policy);
    AppendU64(out, f.slots.size());
    for (const MasterSlot& s : f.slots) {
      AppendU64(out, s.number);
      AppendU64(out, static_cast<uint64_t>(s.created_unix));
      AppendMasterKeyParams(out, s.params);
      AppendField(out, s.wrapped);
    }
    AppendU64(out, f.pending.size());
    for (const MasterKeyParams& p : f.pending) AppendMasterKeyParams(out, p);
  }
  AppendField(out, f.check);
  AppendField(out, f.volume_key);
  AppendU64(out, keks.size());
  for (const auto& k : keks) {
    AppendU64(out, k.info.id);
    AppendU64(out, k.info.version);
    AppendU64(out, static_cast<uint64_t>(k.info.created_unix));
    AppendU64(out, static_cast<uint64_t>(k.info.state));
    AppendField(out, k.wrapped);
  }
  return out;
}

// After a MAC mismatch: the one field of envelopefs.toml that, put back to another value, makes
// the keyring authenticate (so that field was edited, not the keyring), with the value the
// keyring vouches for: {"chunk_size", "16384"}. Tries every valid chunk size, the other names
// mode and (format 2) each KEK's creation time (init gives the volume and KEK version 1 the same
// one). Empty if no single config field explains the mismatch.
std::pair<std::string, std::string> EditedConfigField(const SecureBytes& mac_key, MacFields fields,
                                                      std::span<const StoredKek> keks,
                                                      std::span<const uint8_t> mac) {
  const VolumeConfig& config = fields.config;
  auto authenticates = [&](const VolumeConfig& candidate) {
    MacFields f{fields.format, candidate,         fields.generation, fields.master, fields.policy,
                fields.check,  fields.volume_key, fields.slots,      fields.pending};
    return ConstantTimeEqual(mac, HmacSha256(mac_key.span(), MacInput(f, keks)));
  };
  for (uint32_t size = format::kMinChunkSize; size <= format::kMaxChunkSize; size *= 2) {
    VolumeConfig c = config;
    c.chunk_size = size;
    if (size != config.chunk_size && authenticates(c)) return {"chunk_size", std::to_string(size)};
  }
  VolumeConfig names = config;
  names.plaintext_names = !config.plaintext_names;
  if (authenticates(names)) {
    return {"plaintext_names", names.plaintext_names ? "true" : "false"};
  }
  if (fields.format >= 2) {
    for (const StoredKek& k : keks) {
      VolumeConfig c = config;
      c.created_unix = k.info.created_unix;
      if (c.created_unix != config.created_unix && authenticates(c)) {
        return {"created", FormatUtc(c.created_unix)};
      }
    }
  }
  return {};
}

std::vector<uint8_t> B64Field(const toml::node_view<const toml::node>& node, const char* what,
                              const std::filesystem::path& file) {
  auto text = node.value<std::string>();
  std::optional<std::vector<uint8_t>> bytes;
  if (text) bytes = FromBase64Url(*text);
  if (!bytes) throw Error(ErrorKind::kConfig, file.string() + ": missing or invalid " + what);
  return *bytes;
}

// Format 3's [[slot]] entries: 1 to MasterSlot::kMaxSlots, numbered uniquely in 1..kMaxSlots,
// each with its [slot.master_key] and wrapped keyring key. Sorted by number.
std::vector<MasterSlot> ParseSlots(const toml::table& t, const std::filesystem::path& file) {
  auto fail = [&file](const std::string& what) {
    return Error(ErrorKind::kConfig, file.string() + ": " + what);
  };
  const toml::array* array = t["slot"].as_array();
  if (array == nullptr || array->empty()) throw fail("no master slots");
  if (array->size() > MasterSlot::kMaxSlots) throw fail("too many master slots");
  std::vector<MasterSlot> slots;
  for (const toml::node& node : *array) {
    const toml::table* st = node.as_table();
    if (st == nullptr) throw fail("invalid [[slot]] entry");
    auto number = (*st)["number"].value_exact<int64_t>();
    auto created = (*st)["created"].value<toml::date_time>();
    if (!number || *number < 1 || *number > MasterSlot::kMaxSlots || !created) {
      throw fail("invalid [[slot]] entry");
    }
    MasterSlot slot;
    slot.number = static_cast<uint32_t>(*number);
    slot.created_unix = FromTomlTime(*created);
    slot.params = ParseMasterKeyParams(*st, file);
    slot.wrapped = B64Field((*st)["keyring_key"], "slot keyring_key", file);
    if (slot.wrapped.size() != kWrappedKeySize) throw fail("invalid slot keyring_key");
    for (const MasterSlot& other : slots) {
      if (other.number == slot.number) throw fail("duplicate master slot number");
    }
    slots.push_back(std::move(slot));
  }
  std::sort(slots.begin(), slots.end(),
            [](const MasterSlot& a, const MasterSlot& b) { return a.number < b.number; });
  return slots;
}

// Format 3's optional [[pending_destroy]] entries: HSM or KMS master keys (at most
// MasterSlot::kMaxSlots) whose protecting key is still to be destroyed.
std::vector<MasterKeyParams> ParsePendingDestroy(const toml::table& t,
                                                 const std::filesystem::path& file) {
  std::vector<MasterKeyParams> pending;
  if (!t.contains("pending_destroy")) return pending;
  const toml::array* array = t["pending_destroy"].as_array();
  if (array == nullptr || array->size() > MasterSlot::kMaxSlots) {
    throw Error(ErrorKind::kConfig, file.string() + ": invalid [[pending_destroy]]");
  }
  for (const toml::node& node : *array) {
    const toml::table* pt = node.as_table();
    if (pt == nullptr) {
      throw Error(ErrorKind::kConfig, file.string() + ": invalid [[pending_destroy]] entry");
    }
    MasterKeyParams params = ParseMasterKeyParams(*pt, file);
    if (params.kind != MasterKeyKind::kPkcs11 && params.kind != MasterKeyKind::kKmip) {
      throw Error(ErrorKind::kConfig,
                  file.string() + ": a [[pending_destroy]] entry that is not an HSM or KMS key");
    }
    pending.push_back(std::move(params));
  }
  return pending;
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

// --- reading -------------------------------------------------------------------------------

KeyringFile KeyringFile::Read(int root_fd, const std::filesystem::path& cipher_dir) {
  const std::filesystem::path file = cipher_dir / kKeyringFileName;
  std::optional<std::string> text =
      ReadSmallFileIn(root_fd, kKeyringFileName, kMaxKeyringSize, file.string());
  if (!text) {
    throw Error(ErrorKind::kConfig,
                file.string() + ": " +
                    (errno == ENOENT ? std::string("no such file")
                     : errno == EINVAL || errno == ELOOP
                         ? std::string("not a regular file")
                         : std::string("cannot read: ") + std::strerror(errno)));
  }
  return Parse(*text, file);
}

std::optional<std::string> KeyringRegression(const KeyringFacts& known, const KeyringFacts& fresh) {
  if (fresh.generation < known.generation) {
    return "generation " + std::to_string(fresh.generation) + " is older than generation " +
           std::to_string(known.generation);
  }
  if (fresh.generation == known.generation && fresh.generation > 0 && !known.digest.empty() &&
      fresh.digest != known.digest) {
    return "a different keyring with the same generation " + std::to_string(fresh.generation);
  }
  if (fresh.max_kek_version < known.max_kek_version) {
    return "KEK version " + std::to_string(known.max_kek_version) + " is missing";
  }
  for (uint32_t v : known.retired) {
    if (!std::binary_search(fresh.retired.begin(), fresh.retired.end(), v)) {
      return "retired KEK version " + std::to_string(v) + " is back";
    }
  }
  return std::nullopt;
}

KeyringFacts Keyring::Facts(const std::string& digest) const {
  KeyringFacts f;
  f.generation = generation_;
  f.digest = digest;
  for (const Entry& e : entries_) {
    f.max_kek_version = std::max(f.max_kek_version, e.info.version);
    if (e.info.state == KekState::kRetired) f.retired.push_back(e.info.version);
  }
  std::sort(f.retired.begin(), f.retired.end());
  return f;
}

KeyringFile KeyringFile::Parse(const std::string& text, const std::filesystem::path& file) {
  auto fail = [&file](const std::string& what) -> Error {
    return Error(ErrorKind::kConfig, file.string() + ": " + what);
  };
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw fail("empty (" + std::to_string(text.size()) +
               " bytes): the keyring was truncated or never written; restore it from a backup");
  }
  if (auto problem = TomlShapeProblem(text)) {
    throw fail("damaged or truncated keyring (" + *problem + ")");
  }
  toml::table table;
  try {
    table = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    throw fail(std::string("damaged or truncated keyring (") + std::string(e.description()) + ")");
  }
  const toml::table& t = table;
  KeyringFile k;
  k.file_ = file;
  k.digest_ = ToHex(Sha256(AsBytes(text)));
  // Integers with value_exact: toml++'s float -> integer conversion of an out-of-range float
  // is undefined behaviour (found by fuzzing the config, which reads integers the same way).
  auto format = t["format"].value_exact<int64_t>();
  if (!format) throw fail("no format field: truncated, damaged or not an envelopefs keyring");
  if (*format < 1 || *format > 3) {
    throw fail("unsupported keyring format " + std::to_string(*format));
  }
  k.format_ = static_cast<int>(*format);
  auto volume_id = t["volume_id"].value<std::string>();
  auto id_bytes = volume_id ? FromHex(*volume_id) : std::nullopt;
  if (!id_bytes) throw fail("missing or invalid volume_id");
  k.volume_id_ = *id_bytes;
  if (k.format_ >= 2) {
    auto generation = t["generation"].value_exact<int64_t>();
    if (!generation || *generation < 1) throw fail("missing or invalid generation");
    k.generation_ = static_cast<uint64_t>(*generation);
    if (k.format_ == 2) {
      k.master_ = ParseMasterKeyParams(t, file);
    } else {
      try {
        k.slots_ = ParseSlots(t, file);
        k.pending_ = ParsePendingDestroy(t, file);
      } catch (const Error& e) {
        // Slots come before the KEKs: a keyring cut short usually ends in one.
        throw Error(ErrorKind::kConfig, std::string(e.what()) + " (damaged or truncated keyring)");
      }
    }
    VolumePolicy policy;
    auto days = t["policy"]["rotate_after_days"].value_exact<int64_t>();
    auto audit = t["policy"]["audit_log"].value_exact<bool>();
    if (!days || *days < 1 || *days > VolumePolicy::kMaxRotateAfterDays || !audit)
      throw fail("missing or invalid [policy]");
    policy.rotate_after_days = static_cast<uint32_t>(*days);
    policy.audit_log = *audit;
    k.policy_ = policy;
  }
  k.check_ = B64Field(t["check"], "check", file);
  k.volume_key_ = B64Field(t["volume_key"], "volume_key", file);
  k.mac_ = B64Field(t["mac"], "mac", file);
  const toml::array* keks = t["kek"].as_array();
  if (keks == nullptr || keks->empty()) throw fail("no KEKs");
  for (const toml::node& node : *keks) {
    const toml::table* kt = node.as_table();
    if (kt == nullptr) throw fail("invalid [[kek]] entry");
    const toml::table& e = *kt;
    StoredKek r;
    auto id = e["id"].value_exact<int64_t>();
    auto version = e["version"].value_exact<int64_t>();
    auto created = e["created"].value<toml::date_time>();
    auto state = e["state"].value<std::string>();
    if (!id || !version || !created || !state || *id < 0 || *id > UINT32_MAX || *version < 1 ||
        *version > UINT32_MAX) {
      throw fail("invalid [[kek]] entry");
    }
    r.info = KekInfo{static_cast<uint32_t>(*id), static_cast<uint32_t>(*version),
                     FromTomlTime(*created), ParseState(*state, file)};
    if (r.info.state != KekState::kRetired) r.wrapped = B64Field(e["wrapped"], "wrapped KEK", file);
    k.keks_.push_back(std::move(r));
  }
  return k;
}

VolumePolicy KeyringFile::LegacyPolicy(const VolumeConfig& config) {
  // A format-1 config's policy is not authenticated: it may shorten the rotation period but not
  // stretch it past the default, and never turn the audit log off. That is also what the first
  // keyring change writes into the (authenticated) format-2 keyring.
  VolumePolicy policy;
  if (config.legacy) {
    policy.rotate_after_days =
        std::min(config.legacy->policy.rotate_after_days, kLegacyMaxRotateAfterDays);
  }
  policy.audit_log = true;
  return policy;
}

VolumePolicy KeyringFile::claimed_policy(const VolumeConfig& config) const {
  return policy_ ? *policy_ : LegacyPolicy(config);
}

void KeyringFile::CheckBelongsTo(const VolumeConfig& config) const {
  if (!std::equal(volume_id_.begin(), volume_id_.end(), config.volume_id.begin(),
                  config.volume_id.end())) {
    throw Error(ErrorKind::kConfig, file_.string() +
                                        ": belongs to another volume (volume_id does not match " +
                                        kConfigFileName + ")");
  }
}

void KeyringFile::CheckKekSet(std::vector<KekInfo>& keks) const {
  auto fail = [this](const std::string& what) -> Error {
    return Error(ErrorKind::kConfig, file_.string() + ": " + what);
  };
  size_t active = 0;
  for (const KekInfo& k : keks) active += k.state == KekState::kActive ? 1 : 0;
  if (active != 1) throw fail("must have exactly one active KEK version");
  std::sort(keks.begin(), keks.end(),
            [](const KekInfo& a, const KekInfo& b) { return a.version < b.version; });
  for (size_t i = 1; i < keks.size(); ++i) {
    if (keks[i].version == keks[i - 1].version) throw fail("duplicate KEK version");
  }
}

std::vector<KekInfo> KeyringFile::claimed_keks(const VolumeConfig& config) const {
  CheckBelongsTo(config);
  std::vector<KekInfo> keks;
  for (const StoredKek& r : keks_) keks.push_back(r.info);
  CheckKekSet(keks);
  return keks;
}

Keyring KeyringFile::Open(const VolumeConfig& config, const SecureBytes& keyring_key) const {
  auto fail = [this](const std::string& what) -> Error {
    return Error(ErrorKind::kConfig, file_.string() + ": " + what);
  };
  KeyringKeys keys(keyring_key);
  if (!std::equal(volume_id_.begin(), volume_id_.end(), config.volume_id.begin(),
                  config.volume_id.end())) {
    if (ConstantTimeEqual(check_, HmacSha256(keys.check.span(), volume_id_))) {
      // The key opens this keyring under its own volume id: the config's id is the odd one.
      throw Error(ErrorKind::kConfig, (file_.parent_path() / kConfigFileName).string() +
                                          ": volume_id was edited, or the file belongs to "
                                          "another volume (the keyring authenticates volume_id "
                                          "'" +
                                          ToHex(volume_id_) + "')");
    }
    throw fail(std::string("belongs to another volume (volume_id does not match ") +
               kConfigFileName + ")");
  }
  if (format_ == 1 && !config.legacy) {
    throw fail("a format-1 keyring in a format-" + std::to_string(config.format_version) +
               " volume");
  }
  Sha256Digest expected_check = HmacSha256(keys.check.span(), config.volume_id);
  if (!ConstantTimeEqual(check_, expected_check)) {
    throw Error(ErrorKind::kWrongKey,
                "wrong key or passphrase for volume " + file_.parent_path().string());
  }
  Keyring k;
  k.generation_ = format_ >= 2 ? generation_ : 0;
  k.slots_ = slots(config);
  k.pending_ = pending_;
  k.policy_ = policy_ ? *policy_ : LegacyPolicy(config);
  k.keyring_key_ = keyring_key.Clone();
  std::copy_n(config.volume_id.begin(), k.volume_id_.size(), k.volume_id_.begin());
  MacFields fields{format_,     config, k.generation_, &k.slots_.front().params, &k.policy_, check_,
                   volume_key_, slots_, pending_};
  Sha256Digest expected_mac = HmacSha256(keys.mac.span(), MacInput(fields, keks_));
  if (!ConstantTimeEqual(mac_, expected_mac)) {
    const std::string config_file = (file_.parent_path() / kConfigFileName).string();
    auto [field, value] = EditedConfigField(keys.mac, fields, keks_, mac_);
    if (!field.empty()) {
      throw Error(ErrorKind::kConfig, config_file + ": " + field +
                                          " was edited (the keyring authenticates " + field +
                                          " = " + value +
                                          "): put the value back; a volume's parameters cannot "
                                          "be changed");
    }
    throw Error(ErrorKind::kConfig,
                config_file + " and " + kKeyringFileName +
                    " do not authenticate together: one of them was edited or damaged");
  }
  auto volume_key = Unwrap(keys.wrap, VolumeKeyAad(config), volume_key_);
  if (!volume_key) throw fail("volume key does not authenticate");
  k.volume_key_ = std::move(*volume_key);
  std::vector<KekInfo> infos;
  for (const StoredKek& r : keks_) {
    Keyring::Entry entry{r.info, {}};
    if (r.info.state != KekState::kRetired) {
      auto kek = Unwrap(keys.wrap, KekAad(config, r.info.id, r.info.version), r.wrapped);
      if (!kek) {
        throw fail("KEK version " + std::to_string(r.info.version) + " does not authenticate");
      }
      entry.key = std::move(*kek);
    }
    infos.push_back(r.info);
    k.entries_.push_back(std::move(entry));
  }
  CheckKekSet(infos);
  std::sort(k.entries_.begin(), k.entries_.end(),
            [](const Keyring::Entry& a, const Keyring::Entry& b) {
              return a.info.version < b.info.version;
            });
  return k;
}

// --- the keyring ---------------------------------------------------------------------------

Keyring Keyring::CreateNew(int64_t now_unix, const VolumeId& volume, const MasterKeyParams& master,
                           const SecureBytes& master_key, const VolumePolicy& policy) {
  Keyring k;
  k.entries_.push_back(
      Entry{KekInfo{RandomKekId(), 1, now_unix, KekState::kActive}, SecureBytes::Random(kKeySize)});
  k.volume_key_ = SecureBytes::Random(kKeySize);
  k.keyring_key_ = SecureBytes::Random(kKeySize);
  k.volume_id_ = volume;
  k.slots_.push_back(
      MasterSlot{1, now_unix, master, WrapForSlot(master_key, volume, 1, k.keyring_key_)});
  k.policy_ = policy;
  return k;
}

std::string Keyring::Save(int root_fd, const std::filesystem::path& cipher_dir,
                          const VolumeConfig& config) {
  if (!std::equal(config.volume_id.begin(), config.volume_id.end(), volume_id_.begin())) {
    throw Error(ErrorKind::kConfig, "a keyring saved with another volume's config");
  }
  if (slots_.size() == 1 && slots_.front().wrapped.empty() && slots_.front().created_unix == 0) {
    slots_.front().created_unix = config.created_unix;  // the best guess for a format-1/2 keyring
  }
  UpgradeImplicitSlot();
  KeyringKeys keys(keyring_key_);
  Sha256Digest check = HmacSha256(keys.check.span(), config.volume_id);
  std::vector<uint8_t> wrapped_volume_key = Wrap(keys.wrap, VolumeKeyAad(config), volume_key_);
  std::vector<StoredKek> records;
  for (const Entry& e : entries_) {
    StoredKek r{e.info, {}};
    if (e.info.state != KekState::kRetired) {
      r.wrapped = Wrap(keys.wrap, KekAad(config, e.info.id, e.info.version), e.key);
    }
    records.push_back(std::move(r));
  }
  MacFields fields{3,      config,  generation_, nullptr, &policy_, check, wrapped_volume_key,
                   slots_, pending_};
  Sha256Digest mac = HmacSha256(keys.mac.span(), MacInput(fields, records));
  toml::array slots;
  for (const MasterSlot& s : slots_) {
    slots.push_back(toml::table{{"number", int64_t{s.number}},
                                {"created", ToTomlTime(s.created_unix)},
                                {"keyring_key", ToBase64Url(s.wrapped)},
                                {"master_key", MasterKeyParamsToml(s.params)}});
  }
  toml::array pending;
  for (const MasterKeyParams& p : pending_) {
    pending.push_back(toml::table{{"master_key", MasterKeyParamsToml(p)}});
  }

  toml::array keks;
  for (const StoredKek& r : records) {
    toml::table e{{"id", int64_t{r.info.id}},
                  {"version", int64_t{r.info.version}},
                  {"created", ToTomlTime(r.info.created_unix)},
                  {"state", KekStateName(r.info.state)}};
    if (!r.wrapped.empty()) e.insert("wrapped", ToBase64Url(r.wrapped));
    keks.push_back(std::move(e));
  }
  toml::table policy{{"rotate_after_days", int64_t{policy_.rotate_after_days}},
                     {"audit_log", policy_.audit_log}};
  toml::table root{{"format", 3},
                   {"volume_id", ToHex(config.volume_id)},
                   {"generation", static_cast<int64_t>(generation_)},
                   {"check", ToBase64Url(check)},
                   {"volume_key", ToBase64Url(wrapped_volume_key)},
                   {"mac", ToBase64Url(mac)},
                   {"policy", std::move(policy)},
                   {"slot", std::move(slots)},
                   {"kek", std::move(keks)}};
  if (!pending.empty()) root.insert("pending_destroy", std::move(pending));
  std::ostringstream out;
  out << kKeyringHeadline << " (see envelopefs-format(5)). Authenticated: do not edit.\n"
      << root << "\n";
  const std::string text = out.str();
  ReplaceFileIn(root_fd, kKeyringFileName, text, 0600, (cipher_dir / kKeyringFileName).string());
  return ToHex(Sha256(AsBytes(text)));
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
