// libFuzzer target: the keyring file, envelopefs.keyring (TOML): parsing, the claims read
// without a key, and opening it with the test volume's master key (check value, MAC, unwrapping
// the volume key and every KEK, the KEK set's rules).
//
// Input: mode (u8), then
//   mode even: the keyring's text (the test volume's real keyring in the seeds); with mode
//              bit 1, a format-2 text is first given the check value and MAC that the test
//              volume's master key makes for its fuzzed fields (computed as envelopefs-format(5),
//              VOLUME FILES, defines them), so the checks after the MAC (unwrapping the volume
//              key and the KEKs, the KEK set's rules) run on fuzzed entries;
//   mode odd:  operations on a keyring made by the real writer (so the MAC holds and the code
//              after it sees many shapes of keyrings): each byte pair is an operation and its
//              argument (rotate, retire a version, set the generation, the policy, replace, add
//              or remove a master slot). The keyring is saved, read back and opened; what was
//              saved must be what opens, and every slot must open with its master key.
#include <fcntl.h>
#include <toml++/toml.h>

#include <algorithm>
#include <sstream>

#include "canonical_bytes.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/keyring.h"
#include "fuzz_support.h"
#include "toml_master_key.h"
#include "toml_time.h"

using namespace envelopefs;

namespace {

constexpr int64_t kLastSecondOf9999 = 253402300799;

// `text` with the check value and MAC of the test volume's master key over its fields, or
// nullopt if it is not a format-2 keyring whose fields can be read.
std::optional<std::string> Authenticate(std::string_view text) {
  const VolumeConfig& config = fuzz::TestVolume().config();
  const SecureBytes& master = fuzz::TestMasterKey();
  toml::table t;
  try {
    t = toml::parse(text);
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
  auto generation = t["generation"].value_exact<int64_t>();
  auto days = t["policy"]["rotate_after_days"].value_exact<int64_t>();
  auto audit = t["policy"]["audit_log"].value_exact<bool>();
  auto volume_key = FromBase64Url(t["volume_key"].value_or(std::string()));
  const toml::array* keks = t["kek"].as_array();
  if (t["format"].value_exact<int64_t>() != 2 || !generation || !days || !audit || !volume_key ||
      keks == nullptr) {
    return std::nullopt;
  }
  MasterKeyParams params;
  try {
    params = ParseMasterKeyParams(t, "fuzz");
  } catch (const Error&) {
    return std::nullopt;
  }
  const Sha256Digest check =
      HmacSha256(DeriveKey(master.span(), "envelopefs keyring check v1").span(), config.volume_id);
  std::vector<uint8_t> in;
  AppendField(in, AsBytes("envelopefs keyring v2"));
  AppendField(in, config.IdentityBytes());
  AppendU64(in, static_cast<uint64_t>(*generation));
  AppendMasterKeyParams(in, params);
  AppendPolicy(in, VolumePolicy{static_cast<uint32_t>(*days), *audit});
  AppendField(in, check);
  AppendField(in, *volume_key);
  AppendU64(in, keks->size());
  for (const toml::node& node : *keks) {
    const toml::table* e = node.as_table();
    if (e == nullptr) return std::nullopt;
    auto id = (*e)["id"].value_exact<int64_t>();
    auto version = (*e)["version"].value_exact<int64_t>();
    auto created = (*e)["created"].value<toml::date_time>();
    auto state = (*e)["state"].value<std::string>();
    if (!id || !version || !created || !state) return std::nullopt;
    const uint64_t state_number = *state == "active"         ? 0
                                  : *state == "decrypt-only" ? 1
                                  : *state == "retired"      ? 2
                                                             : 3;
    auto wrapped = state_number == 2 ? std::vector<uint8_t>()
                                     : FromBase64Url((*e)["wrapped"].value_or(std::string()));
    if (state_number == 3 || !wrapped) return std::nullopt;
    AppendU64(in, static_cast<uint32_t>(*id));
    AppendU64(in, static_cast<uint32_t>(*version));
    AppendU64(in, static_cast<uint64_t>(FromTomlTime(*created)));
    AppendU64(in, state_number);
    AppendField(in, *wrapped);
  }
  const Sha256Digest mac =
      HmacSha256(DeriveKey(master.span(), "envelopefs keyring mac v1").span(), in);
  t.insert_or_assign("check", ToBase64Url(check));
  t.insert_or_assign("mac", ToBase64Url(mac));
  std::ostringstream out;
  out << t << "\n";
  return out.str();
}

void OpenText(std::string_view text) {
  const VolumeConfig& config = fuzz::TestVolume().config();
  try {
    KeyringFile file = KeyringFile::Parse(std::string(text), "fuzz/envelopefs.keyring");
    file.claimed_policy(config);
    // The keyring key: a format-3 slot's, else (formats 1 and 2) the master key itself.
    SecureBytes keyring_key = fuzz::TestMasterKey().Clone();
    try {
      for (const MasterSlot& slot : file.slots(config)) {
        if (auto key = file.UnwrapSlot(slot.number, fuzz::TestMasterKey())) {
          keyring_key = std::move(*key);
          break;
        }
      }
      file.claimed_keks(config);
    } catch (const Error&) {
    }
    Keyring keyring = file.Open(config, keyring_key);
    fuzz::Check(keyring.volume_key().size() == kKeySize, "the volume key is 32 bytes");
    KekInfo active = keyring.active();
    fuzz::Check(keyring.kek(active.id, active.version) != nullptr, "the active KEK has a key");
    keyring.Facts(file.digest());
    fuzz::Note("keyring opened");
  } catch (const Error& e) {
    fuzz::Note(e.what());
  }
}

void Operations(fuzz::Input& in) {
  const VolumeConfig& config = fuzz::TestVolume().config();
  int64_t now = static_cast<int64_t>(in.U32());
  Keyring k = Keyring::CreateNew(now, config.volume_id, MasterKeyParams{}, fuzz::TestMasterKey(),
                                 VolumePolicy{});
  while (in.remaining() > 0) {
    const uint8_t op = in.U8();
    const uint8_t arg = in.U8();
    try {
      switch (op % 8) {
        case 0:
          now = std::min(kLastSecondOf9999, now + int64_t{arg} * 86400 * 97);
          k.Rotate(now);
          break;
        case 1:
          k.Retire(arg % 8);
          break;
        case 2:
          k.set_generation(1 + arg * uint64_t{0x0101010101});
          break;
        case 3:
          k.set_policy(VolumePolicy{1 + arg * 143u, (arg & 1) != 0});
          break;
        case 4: {
          MasterKeyParams params;
          if (arg & 1) {
            params.kind = MasterKeyKind::kPassphrase;
            KdfParams kdf;
            kdf.opslimit = 1 + arg % KdfParams::kMaxOpsLimit;
            kdf.memlimit = uint64_t{8192} << (arg % 18);
            kdf.salt.fill(arg);
            params.kdf = kdf;
          }
          k.ReplaceSlot(k.slots().front().number, params, fuzz::TestMasterKey(), now);
          break;
        }
        case 5: {
          MasterKeyParams params;
          params.kind = (arg & 1) ? MasterKeyKind::kRecovery : MasterKeyKind::kKeyFile;
          k.AddSlot(params, fuzz::TestMasterKey(), now);
          break;
        }
        case 6:
          k.RemoveSlot(arg % (MasterSlot::kMaxSlots + 1));
          break;
        default:
          break;
      }
    } catch (const Error&) {
      // Refused operations (retiring the active or an unknown version) change nothing.
    }
  }
  std::filesystem::path path;
  UniqueFd dir = fuzz::FreshDir("keyring", &path);
  k.Save(dir.get(), path, config);
  KeyringFile file = KeyringFile::Read(dir.get(), path);
  Keyring back = file.Open(config, k.keyring_key());
  for (const MasterSlot& slot : k.slots()) {
    auto key = file.UnwrapSlot(slot.number, fuzz::TestMasterKey());
    fuzz::Check(key && std::ranges::equal(key->span(), k.keyring_key().span()),
                "every slot opens with its master key");
  }
  fuzz::Check(back.generation() == k.generation(), "the generation reads back");
  fuzz::Check(back.policy().rotate_after_days == k.policy().rotate_after_days &&
                  back.policy().audit_log == k.policy().audit_log,
              "the policy reads back");
  fuzz::Check(back.slots().size() == k.slots().size(), "the master slots read back");
  for (size_t i = 0; i < k.slots().size(); ++i) {
    fuzz::Check(back.slots()[i].number == k.slots()[i].number &&
                    back.slots()[i].params.kind == k.slots()[i].params.kind &&
                    back.slots()[i].created_unix == k.slots()[i].created_unix,
                "a master slot reads back as saved");
  }
  const std::vector<KekInfo> a = k.keks(), b = back.keks();
  fuzz::Check(a.size() == b.size(), "every KEK reads back");
  for (size_t i = 0; i < a.size(); ++i) {
    fuzz::Check(a[i].id == b[i].id && a[i].version == b[i].version &&
                    a[i].created_unix == b[i].created_unix && a[i].state == b[i].state,
                "a KEK reads back as saved");
  }
  fuzz::Check(std::ranges::equal(back.volume_key().span(), k.volume_key().span()),
              "the volume key reads back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  if (mode & 1) {
    Operations(in);
  } else if (mode & 2) {
    if (auto text = Authenticate(in.RestText())) OpenText(*text);
  } else {
    OpenText(in.RestText());
  }
  return 0;
}
