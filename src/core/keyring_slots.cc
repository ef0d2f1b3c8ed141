// Master slots of the keyring (see keyring.h) and the wrapping they share with the rest of the
// keyring (keyring_wrap.h). The layout is documented in envelopefs-format(5).
#include <algorithm>
#include <cstring>

#include "canonical_bytes.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/keyring.h"
#include "keyring_wrap.h"

namespace envelopefs {

namespace keyring_wrap {

namespace {

constexpr char kWrapLabel[] = "envelopefs keyring wrap v1";
constexpr char kMacLabel[] = "envelopefs keyring mac v1";
constexpr char kCheckLabel[] = "envelopefs keyring check v1";
constexpr char kSlotLabel[] = "envelopefs keyring slot v1";

std::vector<uint8_t> SlotAad(const VolumeId& volume, uint32_t number) {
  uint8_t b[4];
  StoreLe32(b, number);
  return Concat({AsBytes(kSlotLabel), volume, b});
}

}  // namespace

KeyringKeys::KeyringKeys(const SecureBytes& keyring_key)
    : wrap(DeriveKey(keyring_key.span(), kWrapLabel)),
      mac(DeriveKey(keyring_key.span(), kMacLabel)),
      check(DeriveKey(keyring_key.span(), kCheckLabel)) {}

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

// A short-lived, cleansed cipher context (crypto.h).
std::vector<uint8_t> Wrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                          const SecureBytes& key) {
  std::vector<uint8_t> out(kWrappedKeySize);
  GcmNonce nonce = RandomNonce();
  std::copy(nonce.begin(), nonce.end(), out.begin());
  SealWithWrappingKey(wrap_key.span(), nonce, aad, key.span(),
                      std::span(out).subspan(kGcmNonceSize, kKeySize),
                      std::span(out).subspan<kGcmNonceSize + kKeySize, kGcmTagSize>());
  return out;
}

std::optional<SecureBytes> Unwrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                                  std::span<const uint8_t> wrapped) {
  if (wrapped.size() != kWrappedKeySize) return std::nullopt;
  SecureBytes key(kKeySize);
  if (!OpenWithWrappingKey(wrap_key.span(), wrapped.subspan<0, kGcmNonceSize>(), aad,
                           wrapped.subspan(kGcmNonceSize, kKeySize),
                           wrapped.subspan<kGcmNonceSize + kKeySize, kGcmTagSize>(),
                           key.mutable_span())) {
    return std::nullopt;
  }
  return key;
}

std::vector<uint8_t> WrapForSlot(const SecureBytes& master_key, const VolumeId& volume,
                                 uint32_t number, const SecureBytes& keyring_key) {
  return Wrap(DeriveKey(master_key.span(), kSlotLabel), SlotAad(volume, number), keyring_key);
}

std::optional<SecureBytes> UnwrapSlot(const SecureBytes& master_key, const VolumeId& volume,
                                      uint32_t number, std::span<const uint8_t> wrapped) {
  if (master_key.size() != kKeySize) return std::nullopt;
  return Unwrap(DeriveKey(master_key.span(), kSlotLabel), SlotAad(volume, number), wrapped);
}

}  // namespace keyring_wrap

namespace {

bool SameParams(const MasterKeyParams& a, const MasterKeyParams& b) {
  std::vector<uint8_t> x, y;
  AppendMasterKeyParams(x, a);
  AppendMasterKeyParams(y, b);
  return x == y;
}

// The slot numbered `number` in `slots` (a Keyring's or a KeyringFile's), or slots.end().
template <typename Slots>
auto FindSlot(Slots& slots, uint32_t number) {
  return std::find_if(slots.begin(), slots.end(),
                      [&](const MasterSlot& s) { return s.number == number; });
}

// A source whose master key does not depend on a slot's parameters: read once for all its slots.
bool SameKeyForEverySlot(MasterKeyKind kind) {
  return kind == MasterKeyKind::kKeyFile || kind == MasterKeyKind::kCommand ||
         kind == MasterKeyKind::kRecovery;
}

}  // namespace

const char* MasterKeyKindName(MasterKeyKind kind) {
  switch (kind) {
    case MasterKeyKind::kKeyFile:
      return "keyfile";
    case MasterKeyKind::kPassphrase:
      return "passphrase";
    case MasterKeyKind::kCommand:
      return "command";
    case MasterKeyKind::kPkcs11:
      return "pkcs11";
    case MasterKeyKind::kKmip:
      return "kmip";
    case MasterKeyKind::kRecovery:
      return "recovery";
  }
  return "unknown";
}

std::string DescribeMasterKey(const MasterKeyParams& params) {
  switch (params.kind) {
    case MasterKeyKind::kKeyFile:
      return "a key file";
    case MasterKeyKind::kPassphrase:
      return "a passphrase";
    case MasterKeyKind::kCommand:
      return "a command";
    case MasterKeyKind::kRecovery:
      return "a recovery key";
    case MasterKeyKind::kPkcs11:
      if (!params.pkcs11) break;
      return "PKCS#11 key \"" + params.pkcs11->key_label + "\" in token \"" +
             params.pkcs11->token_label + "\"";
    case MasterKeyKind::kKmip:
      if (!params.kmip) break;
      return "KMIP key \"" + params.kmip->key_id + "\"";
  }
  return "an unknown source";
}

// --- KeyringFile: unlocking -----------------------------------------------------------------

std::vector<MasterSlot> KeyringFile::slots(const VolumeConfig& config) const {
  if (format_ >= 3) return slots_;
  MasterSlot implicit;
  implicit.number = 1;
  if (master_) {
    implicit.params = *master_;
  } else if (config.legacy) {
    implicit.params = config.legacy->master;
  } else {
    throw Error(ErrorKind::kConfig, file_.string() + ": a format-1 keyring in a format-" +
                                        std::to_string(config.format_version) + " volume");
  }
  return {implicit};
}

std::optional<SecureBytes> KeyringFile::UnwrapSlot(uint32_t number,
                                                   const SecureBytes& master_key) const {
  if (format_ < 3) {
    if (number != 1) return std::nullopt;
    return master_key.Clone();  // the master key is the keyring key
  }
  // The slot binds the keyring's own volume id; Open checks it against the config's.
  VolumeId volume{};
  if (volume_id_.size() != volume.size()) return std::nullopt;
  std::copy(volume_id_.begin(), volume_id_.end(), volume.begin());
  auto slot = FindSlot(slots_, number);
  if (slot == slots_.end()) return std::nullopt;
  return keyring_wrap::UnwrapSlot(master_key, volume, number, slot->wrapped);
}

KeyringFile::Unlocked KeyringFile::Unlock(const VolumeConfig& config,
                                          const MasterKeySource& source) const {
  const std::vector<MasterSlot> all = slots(config);
  std::vector<const MasterSlot*> mine;
  for (const MasterSlot& slot : all) {
    if (slot.params.kind == source.kind()) mine.push_back(&slot);
  }
  if (mine.empty()) {
    if (all.size() == 1) throw WrongSourceError(all.front().params);
    std::string list;
    for (const MasterSlot& slot : all) {
      list += (list.empty() ? "" : ", ") + std::to_string(slot.number) + " (" +
              DescribeMasterKey(slot.params) + ")";
    }
    throw Error(ErrorKind::kUsage, "no master slot of " + file_.parent_path().string() +
                                       " opens with a " + MasterKeyKindName(source.kind()) +
                                       "; its slots: " + list);
  }
  VolumeId volume{};
  std::copy_n(config.volume_id.begin(), volume.size(), volume.begin());
  std::optional<Error> first_error;
  std::optional<SecureBytes> shared;  // SameKeyForEverySlot: the one master key
  bool tried = false;
  for (const MasterSlot* slot : mine) {
    SecureBytes master;
    try {
      if (shared) {
        master = shared->Clone();
      } else {
        master = source.MasterKey(slot->params, volume);
        if (SameKeyForEverySlot(source.kind())) shared = master.Clone();
      }
    } catch (const Error& e) {
      if (!first_error) first_error = e;
      // Only "this slot's key is not reachable with these options" (kUsage: another token key,
      // a KMS key refused) moves on to the next slot. A wrong PIN or an unreachable token or
      // KMS would fail the same way for every slot: trying again would only burn PIN attempts
      // (tokens lock the PIN) or wait out one more timeout per slot.
      if (shared || SameKeyForEverySlot(source.kind()) || e.kind() != ErrorKind::kUsage) break;
      continue;
    }
    tried = true;
    if (auto key = UnwrapSlot(slot->number, master)) {
      return Unlocked{std::move(*key), slot->number, std::move(master)};
    }
  }
  if (tried || !first_error) {
    throw Error(ErrorKind::kWrongKey,
                "wrong key or passphrase for volume " + file_.parent_path().string());
  }
  throw *first_error;
}

// --- Keyring: changing slots ----------------------------------------------------------------

void Keyring::UpgradeImplicitSlot() {
  if (slots_.size() != 1 || !slots_.front().wrapped.empty()) return;
  // The keyring key so far is the implicit slot's master key.
  SecureBytes master = std::move(keyring_key_);
  keyring_key_ = SecureBytes::Random(kKeySize);
  slots_.front().wrapped = keyring_wrap::WrapForSlot(master, volume_id_, 1, keyring_key_);
}

uint32_t Keyring::AddSlot(const MasterKeyParams& params, const SecureBytes& master_key,
                          int64_t now_unix) {
  UpgradeImplicitSlot();
  uint32_t number = 1;
  while (number <= MasterSlot::kMaxSlots && FindSlot(slots_, number) != slots_.end()) ++number;
  if (number > MasterSlot::kMaxSlots) {
    throw Error(ErrorKind::kState, "all " + std::to_string(MasterSlot::kMaxSlots) +
                                       " master slots are in use: remove one first");
  }
  MasterSlot slot{number, now_unix, params,
                  keyring_wrap::WrapForSlot(master_key, volume_id_, number, keyring_key_)};
  slots_.push_back(std::move(slot));
  std::sort(slots_.begin(), slots_.end(),
            [](const MasterSlot& a, const MasterSlot& b) { return a.number < b.number; });
  return number;
}

void Keyring::RemoveSlot(uint32_t number) {
  if (FindSlot(slots_, number) == slots_.end()) {
    throw Error(ErrorKind::kUsage, "no master slot " + std::to_string(number));
  }
  if (slots_.size() == 1) {
    throw Error(ErrorKind::kState, "slot " + std::to_string(number) +
                                       " is the only master slot: without it nothing opens the "
                                       "volume (add another first)");
  }
  UpgradeImplicitSlot();
  slots_.erase(FindSlot(slots_, number));
}

void Keyring::ReplaceSlot(uint32_t number, const MasterKeyParams& params,
                          const SecureBytes& master_key, int64_t now_unix) {
  UpgradeImplicitSlot();
  auto it = FindSlot(slots_, number);
  if (it == slots_.end()) {
    throw Error(ErrorKind::kUsage, "no master slot " + std::to_string(number));
  }
  if (slots_.size() == 1) keyring_key_ = SecureBytes::Random(kKeySize);
  *it = MasterSlot{number, now_unix, params,
                   keyring_wrap::WrapForSlot(master_key, volume_id_, number, keyring_key_)};
}

void Keyring::AddPendingDestroy(const MasterKeyParams& params) {
  for (const MasterKeyParams& p : pending_) {
    if (SameParams(p, params)) return;
  }
  pending_.push_back(params);
}

void Keyring::RemovePendingDestroy(const MasterKeyParams& params) {
  std::erase_if(pending_, [&](const MasterKeyParams& p) { return SameParams(p, params); });
}

}  // namespace envelopefs
