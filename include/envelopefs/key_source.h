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
  // Produces the master key for `config`. Throws Error(kConfig/kIo/kUsage) with a clear line.
  virtual SecureBytes MasterKey(const VolumeConfig& config) const = 0;
  // Fills the config fields this source needs at init (e.g. fresh Argon2id salt and limits).
  virtual void PrepareNewVolume(VolumeConfig& config) const = 0;
};

// Reads exactly 32 bytes from `path` (more or fewer is an error naming the file).
std::unique_ptr<MasterKeySource> MakeKeyFileSource(const std::filesystem::path& path);
// Reads the passphrase from `path` (first line, without its newline; "-" is stdin).
std::unique_ptr<MasterKeySource> MakePassFileSource(const std::filesystem::path& path);
// Prompts for the passphrase on the terminal (twice when `confirm`). Error(kUsage) if there is
// no terminal.
std::unique_ptr<MasterKeySource> MakePromptSource(bool confirm);

}  // namespace envelopefs
