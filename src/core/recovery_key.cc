// Recovery keys and their master-key sources — see recovery_key.h.
#include "envelopefs/recovery_key.h"

#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"
#include "secret_input.h"

namespace envelopefs {

namespace {

constexpr size_t kGroupDigits = 4;
constexpr size_t kTextSize = 2 * kKeySize + (2 * kKeySize / kGroupDigits - 1);  // 79
constexpr size_t kMaxFileSize = 4096;

int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Produces one master key, the same for every slot (a recovery key does not depend on the
// slot's parameters, which are empty).
class RecoveryKeySource : public MasterKeySource {
 public:
  MasterKeyKind kind() const override { return MasterKeyKind::kRecovery; }
  MasterKeyParams NewParams(const VolumeId&) const override {
    MasterKeyParams params;
    params.kind = MasterKeyKind::kRecovery;
    return params;
  }
  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId&) const override {
    if (params.kind != MasterKeyKind::kRecovery) throw WrongSourceError(params);
    return Key();
  }

 protected:
  virtual SecureBytes Key() const = 0;
};

class RecoveryKeyFileSource : public RecoveryKeySource {
 public:
  RecoveryKeyFileSource(std::filesystem::path path, bool allow_insecure)
      : path_(std::move(path)), allow_insecure_(allow_insecure) {}

 protected:
  SecureBytes Key() const override {
    UniqueFd fd = OpenSecretFile(path_, "recovery key file", allow_insecure_);
    SecureBytes text = ReadLocked(fd.get(), kMaxFileSize, "recovery key file " + path_.string());
    std::optional<SecureBytes> key = ParseRecoveryKey(text.span());
    if (!key) {
      throw Error(ErrorKind::kUsage, "recovery key file " + path_.string() +
                                         " does not hold a recovery key (64 hex digits, "
                                         "optionally grouped with '-')");
    }
    return std::move(*key);
  }

 private:
  std::filesystem::path path_;
  bool allow_insecure_;
};

class NewRecoveryKeySource : public RecoveryKeySource {
 public:
  explicit NewRecoveryKeySource(const SecureBytes& key) : key_(key.Clone()) {}

 protected:
  SecureBytes Key() const override { return key_.Clone(); }

 private:
  SecureBytes key_;
};

}  // namespace

SecureBytes NewRecoveryKey() { return SecureBytes::Random(kKeySize); }

SecureBytes FormatRecoveryKey(const SecureBytes& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  SecureBytes text(kTextSize);
  size_t at = 0;
  for (size_t i = 0; i < key.size() && i < kKeySize; ++i) {
    if (i > 0 && (2 * i) % kGroupDigits == 0) text.data()[at++] = '-';
    text.data()[at++] = static_cast<uint8_t>(kDigits[key.data()[i] >> 4]);
    text.data()[at++] = static_cast<uint8_t>(kDigits[key.data()[i] & 0xf]);
  }
  return text;
}

std::optional<SecureBytes> ParseRecoveryKey(std::span<const uint8_t> text) {
  SecureBytes key(kKeySize);
  size_t digits = 0;
  for (uint8_t c : text) {
    if (c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    const int v = HexValue(c);
    if (v < 0 || digits >= 2 * kKeySize) return std::nullopt;
    key.data()[digits / 2] =
        static_cast<uint8_t>(key.data()[digits / 2] | (v << (digits % 2 == 0 ? 4 : 0)));
    ++digits;
  }
  if (digits != 2 * kKeySize) return std::nullopt;
  return key;
}

std::unique_ptr<MasterKeySource> MakeRecoveryKeyFileSource(const std::filesystem::path& path,
                                                           bool allow_insecure) {
  return std::make_unique<RecoveryKeyFileSource>(path, allow_insecure);
}

std::unique_ptr<MasterKeySource> MakeNewRecoveryKeySource(const SecureBytes& key) {
  return std::make_unique<NewRecoveryKeySource>(key);
}

}  // namespace envelopefs
