// MasterKeySource implementations: key file, passphrase file, terminal prompt. See key_source.h.
#include "envelopefs/key_source.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>

#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"
#include "secret_input.h"

namespace envelopefs {

namespace {

constexpr size_t kMaxPassphrase = 4096;

}  // namespace

SecureBytes ReadLocked(int fd, size_t max, const std::string& what) {
  SecureBytes buf(max);
  size_t got = 0;
  while (got < max) {
    ssize_t n = ::read(fd, buf.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSystemError("cannot read " + what);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  SecureBytes out = SecureBytes::Copy(buf.span().first(got));
  return out;
}

UniqueFd OpenSecretFile(const std::filesystem::path& path, const char* what, bool allow_insecure) {
  if (path == "-") return UniqueFd(::dup(STDIN_FILENO));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) ThrowSystemError(std::string("cannot open ") + what + " " + path.string());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) ThrowSystemError(std::string("cannot stat ") + path.string());
  if (!allow_insecure && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw Error(ErrorKind::kUsage, std::string(what) + " " + path.string() + " is accessible by " +
                                       "others (mode " + mode + "): run chmod 600 " +
                                       path.string() + " (or pass --insecure-keyfile)");
  }
  return fd;
}

SecureBytes FirstLine(const SecureBytes& raw) {
  size_t len = 0;
  while (len < raw.size() && raw.data()[len] != '\n') ++len;
  if (len > 0 && raw.data()[len - 1] == '\r') --len;
  return SecureBytes::Copy(raw.span().first(len));
}

std::string MasterKeySource::DestroyProtectingKey(const MasterKeyParams&, const VolumeId&) const {
  const char* what = kind() == MasterKeyKind::kKeyFile      ? "a key file"
                     : kind() == MasterKeyKind::kPassphrase ? "a passphrase"
                     : kind() == MasterKeyKind::kRecovery   ? "a recovery key"
                                                            : "a command";
  throw Error(ErrorKind::kUsage, std::string("a master key from ") + what +
                                     " is not protected by a key in an HSM or KMS: there is no "
                                     "key to destroy (only PKCS#11 and KMIP sources have one)");
}

Error WrongSourceError(const MasterKeyParams& params) {
  switch (params.kind) {
    case MasterKeyKind::kKeyFile:
      return Error(ErrorKind::kUsage, "this volume uses a key file: use --keyfile FILE");
    case MasterKeyKind::kPassphrase:
      return Error(ErrorKind::kUsage,
                   "this volume is protected by a passphrase: use --passfile FILE (or no key "
                   "option to be prompted)");
    case MasterKeyKind::kCommand:
      return Error(ErrorKind::kUsage,
                   "this volume's master key comes from a command: use --master-command CMD");
    case MasterKeyKind::kRecovery:
      return Error(ErrorKind::kUsage,
                   "this volume opens with its recovery key: use --recovery-key FILE");
    case MasterKeyKind::kKmip:
      return Error(ErrorKind::kUsage, "this volume's master key is protected by KMIP key \"" +
                                          (params.kmip ? params.kmip->key_id : std::string("?")) +
                                          "\": use --kmip-server HOST:PORT --kmip-key-id '" +
                                          (params.kmip ? params.kmip->key_id : std::string("?")) +
                                          "' --tls-cert FILE --tls-key FILE --tls-ca FILE");
    case MasterKeyKind::kPkcs11:
      break;
  }
  const std::string token = params.pkcs11 ? params.pkcs11->token_label : "?";
  const std::string key = params.pkcs11 ? params.pkcs11->key_label : "?";
  return Error(ErrorKind::kUsage, "this volume's master key is protected by PKCS#11 key \"" + key +
                                      "\" in token \"" + token +
                                      "\": use --pkcs11-module PATH --pkcs11-token '" + token +
                                      "' --pkcs11-key '" + key + "'");
}

namespace {

class KeyFileSource : public MasterKeySource {
 public:
  KeyFileSource(std::filesystem::path path, bool allow_insecure)
      : path_(std::move(path)), allow_insecure_(allow_insecure) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kKeyFile; }
  MasterKeyParams NewParams(const VolumeId&) const override { return MasterKeyParams{}; }
  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId&) const override {
    if (params.kind != MasterKeyKind::kKeyFile) throw WrongSourceError(params);
    UniqueFd fd = OpenSecretFile(path_, "key file", allow_insecure_);
    SecureBytes key = ReadLocked(fd.get(), kKeySize + 1, "key file " + path_.string());
    if (key.size() != kKeySize) {
      throw Error(ErrorKind::kUsage,
                  "key file " + path_.string() + " must hold exactly 32 bytes (it holds " +
                      (key.size() > kKeySize ? std::string("more") : std::to_string(key.size())) +
                      "); create one with: (umask 077; head -c 32 /dev/urandom > FILE)");
    }
    return key;
  }

 private:
  std::filesystem::path path_;
  bool allow_insecure_;
};

// Derives the master key from a passphrase with Argon2id.
class PassphraseSource : public MasterKeySource {
 public:
  MasterKeyKind kind() const override { return MasterKeyKind::kPassphrase; }
  MasterKeyParams NewParams(const VolumeId&) const override {
    MasterKeyParams params;
    params.kind = MasterKeyKind::kPassphrase;
    KdfParams kdf;
#ifdef ENVELOPEFS_TEST_HOOKS  // tests only (CMake option ENVELOPEFS_TEST_HOOKS, off by default)
    const char* fast = std::getenv("ENVELOPEFS_TEST_FAST_KDF");
    const bool test_fast = fast != nullptr && std::string_view(fast) == "1";
#else
    const bool test_fast = false;
#endif
    kdf.opslimit = test_fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    kdf.memlimit = test_fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    RandomBytes(kdf.salt);
    params.kdf = kdf;
    return params;
  }
  SecureBytes MasterKey(const MasterKeyParams& params, const VolumeId&) const override {
    if (params.kind != MasterKeyKind::kPassphrase || !params.kdf) throw WrongSourceError(params);
    SecureBytes pass = CachedPassphrase();
    if (pass.empty()) throw Error(ErrorKind::kUsage, "empty passphrase");
    EnsureCryptoInitialized();
    SecureBytes key(kKeySize);
    const KdfParams& kdf = *params.kdf;
    if (!kdf.Bounded()) throw Error(ErrorKind::kConfig, "Argon2id limits out of bounds");
    if (crypto_pwhash(key.data(), key.size(), reinterpret_cast<const char*>(pass.data()),
                      pass.size(), kdf.salt.data(), kdf.opslimit, kdf.memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
      throw Error(ErrorKind::kIo, "Argon2id failed (out of memory?)");
    }
    return key;
  }

 protected:
  virtual SecureBytes Passphrase() const = 0;

 private:
  // The passphrase is asked (or read) once: a keyring may have several passphrase slots, each
  // with its own salt, and standard input or the terminal can only be read once.
  SecureBytes CachedPassphrase() const {
    std::lock_guard lock(mutex_);
    if (!passphrase_) passphrase_ = Passphrase();
    return passphrase_->Clone();
  }
  mutable std::mutex mutex_;
  mutable std::optional<SecureBytes> passphrase_;
};

class PassFileSource : public PassphraseSource {
 public:
  PassFileSource(std::filesystem::path path, bool allow_insecure)
      : path_(std::move(path)), allow_insecure_(allow_insecure) {}

 protected:
  SecureBytes Passphrase() const override {
    UniqueFd fd = OpenSecretFile(path_, "passphrase file", allow_insecure_);
    return FirstLine(ReadLocked(fd.get(), kMaxPassphrase, "passphrase file " + path_.string()));
  }

 private:
  std::filesystem::path path_;
  bool allow_insecure_;
};

class PromptSource : public PassphraseSource {
 public:
  explicit PromptSource(bool confirm) : confirm_(confirm) {}

 protected:
  SecureBytes Passphrase() const override {
    UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!tty.valid()) {
      throw Error(ErrorKind::kUsage, "no key given: use --keyfile FILE or --passfile FILE");
    }
    SecureBytes first = Ask(tty.get(), "Passphrase: ");
    if (confirm_) {
      SecureBytes again = Ask(tty.get(), "Repeat passphrase: ");
      if (!ConstantTimeEqual(first.span(), again.span())) {
        throw Error(ErrorKind::kUsage, "the passphrases do not match");
      }
    }
    return first;
  }

 private:
  static SecureBytes Ask(int tty, const char* prompt) {
    (void)!::write(tty, prompt, std::strlen(prompt));
    struct termios old {};
    bool have_termios = ::tcgetattr(tty, &old) == 0;
    if (have_termios) {
      struct termios quiet = old;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      quiet.c_lflag |= ICANON;
      ::tcsetattr(tty, TCSAFLUSH, &quiet);
    }
    SecureBytes line(kMaxPassphrase);
    size_t got = 0;
    char c = 0;
    while (got < line.size() && ::read(tty, &c, 1) == 1 && c != '\n') line.data()[got++] = c;
    if (have_termios) ::tcsetattr(tty, TCSAFLUSH, &old);
    (void)!::write(tty, "\n", 1);
    return SecureBytes::Copy(line.span().first(got));
  }
  bool confirm_;
};

}  // namespace

std::unique_ptr<MasterKeySource> MakeKeyFileSource(const std::filesystem::path& path,
                                                   bool allow_insecure) {
  return std::make_unique<KeyFileSource>(path, allow_insecure);
}
std::unique_ptr<MasterKeySource> MakePassFileSource(const std::filesystem::path& path,
                                                    bool allow_insecure) {
  return std::make_unique<PassFileSource>(path, allow_insecure);
}
std::unique_ptr<MasterKeySource> MakePromptSource(bool confirm) {
  return std::make_unique<PromptSource>(confirm);
}

}  // namespace envelopefs
