// MasterKeySource — where a volume's 256-bit master key comes from.
//
// The master key only unwraps the keyring. Sources: a key file (32 raw random bytes), a
// passphrase through Argon2id. HSM (PKCS#11) and KMS (KMIP) sources will implement the same
// interface. Implementations are immutable after construction and thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "envelopefs/secure_bytes.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {

class MasterKeySource {
 public:
  virtual ~MasterKeySource() = default;
  virtual MasterKeyKind kind() const = 0;
  // Produces the master key described by `params`. Throws Error(kConfig/kIo/kUsage) with a
  // clear line (kUsage when the source does not match the volume's kind of master key).
  virtual SecureBytes MasterKey(const MasterKeyParams& params) const = 0;
  // Fresh parameters for a new master key from this source (e.g. Argon2id salt and limits).
  virtual MasterKeyParams NewParams() const = 0;
};

// Key and passphrase files must not be readable or writable by group or others (a clear error
// says how to fix the mode) unless `allow_insecure`; "-" reads standard input.
// Reads exactly 32 bytes from `path` (more or fewer is an error naming the file).
std::unique_ptr<MasterKeySource> MakeKeyFileSource(const std::filesystem::path& path,
                                                   bool allow_insecure = false);
// Reads the passphrase from `path` (first line, without its newline).
std::unique_ptr<MasterKeySource> MakePassFileSource(const std::filesystem::path& path,
                                                    bool allow_insecure = false);
// Prompts for the passphrase on the terminal (twice when `confirm`). Error(kUsage) if there is
// no terminal.
std::unique_ptr<MasterKeySource> MakePromptSource(bool confirm);

}  // namespace envelopefs
