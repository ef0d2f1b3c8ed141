// MasterKeySource implementations: key file, passphrase file, terminal prompt. See key_source.h.
#include "envelopefs/key_source.h"

#include <fcntl.h>
#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

constexpr size_t kMaxPassphrase = 4096;

// Reads up to `max` bytes from `fd` into locked memory; returns the bytes read.
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

// The first line of `raw`, without its line terminator.
SecureBytes FirstLine(const SecureBytes& raw) {
  size_t len = 0;
  while (len < raw.size() && raw.data()[len] != '\n') ++len;
  if (len > 0 && raw.data()[len - 1] == '\r') --len;
  return SecureBytes::Copy(raw.span().first(len));
}

class KeyFileSource : public MasterKeySource {
 public:
  explicit KeyFileSource(std::filesystem::path path) : path_(std::move(path)) {}
  MasterKeyKind kind() const override { return MasterKeyKind::kKeyFile; }
  void PrepareNewVolume(VolumeConfig& config) const override {
    config.master_key_kind = MasterKeyKind::kKeyFile;
    config.kdf.reset();
  }
  SecureBytes MasterKey(const VolumeConfig& config) const override {
    if (config.master_key_kind != MasterKeyKind::kKeyFile) {
      throw Error(ErrorKind::kUsage,
                  "this volume is protected by a passphrase: use --passfile FILE (or no key "
                  "option to be prompted)");
    }
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) ThrowSystemError("cannot open key file " + path_.string());
    SecureBytes key = ReadLocked(fd.get(), kKeySize + 1, "key file " + path_.string());
    if (key.size() != kKeySize) {
      throw Error(ErrorKind::kUsage,
                  "key file " + path_.string() + " must hold exactly 32 bytes (it holds " +
                      (key.size() > kKeySize ? std::string("more") : std::to_string(key.size())) +
                      "); create one with: head -c 32 /dev/urandom > FILE");
    }
    return key;
  }

 private:
  std::filesystem::path path_;
};

// Derives the master key from a passphrase with Argon2id.
class PassphraseSource : public MasterKeySource {
 public:
  MasterKeyKind kind() const override { return MasterKeyKind::kPassphrase; }
  void PrepareNewVolume(VolumeConfig& config) const override {
    config.master_key_kind = MasterKeyKind::kPassphrase;
    KdfParams kdf;
    const char* fast = std::getenv("ENVELOPEFS_TEST_FAST_KDF");
    bool test_fast = fast != nullptr && std::string_view(fast) == "1";
    kdf.opslimit = test_fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    kdf.memlimit = test_fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    RandomBytes(kdf.salt);
    config.kdf = kdf;
  }
  SecureBytes MasterKey(const VolumeConfig& config) const override {
    if (config.master_key_kind != MasterKeyKind::kPassphrase || !config.kdf) {
      throw Error(ErrorKind::kUsage, "this volume uses a key file: use --keyfile FILE");
    }
    SecureBytes pass = Passphrase();
    if (pass.empty()) throw Error(ErrorKind::kUsage, "empty passphrase");
    EnsureCryptoInitialized();
    SecureBytes key(kKeySize);
    const KdfParams& kdf = *config.kdf;
    if (crypto_pwhash(key.data(), key.size(), reinterpret_cast<const char*>(pass.data()),
                      pass.size(), kdf.salt.data(), kdf.opslimit, kdf.memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
      throw Error(ErrorKind::kIo, "Argon2id failed (out of memory?)");
    }
    return key;
  }

 protected:
  virtual SecureBytes Passphrase() const = 0;
};

class PassFileSource : public PassphraseSource {
 public:
  explicit PassFileSource(std::filesystem::path path) : path_(std::move(path)) {}

 protected:
  SecureBytes Passphrase() const override {
    if (path_ == "-") return FirstLine(ReadLocked(STDIN_FILENO, kMaxPassphrase, "stdin"));
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) ThrowSystemError("cannot open passphrase file " + path_.string());
    return FirstLine(ReadLocked(fd.get(), kMaxPassphrase, "passphrase file " + path_.string()));
  }

 private:
  std::filesystem::path path_;
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

std::unique_ptr<MasterKeySource> MakeKeyFileSource(const std::filesystem::path& path) {
  return std::make_unique<KeyFileSource>(path);
}
std::unique_ptr<MasterKeySource> MakePassFileSource(const std::filesystem::path& path) {
  return std::make_unique<PassFileSource>(path);
}
std::unique_ptr<MasterKeySource> MakePromptSource(bool confirm) {
  return std::make_unique<PromptSource>(confirm);
}

}  // namespace envelopefs
