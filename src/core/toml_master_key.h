// The [master_key] section (how the master key is obtained) as the keyring (format 2) and a
// format-1 config store it. It is read before anything can be authenticated (the key is derived
// from it), so it is parsed strictly, its Argon2id limits bounded (KdfParams::Bounded) and its
// PKCS#11 labels and sizes checked.
// Pure, thread-safe.
#pragma once

#include <toml++/toml.h>

#include <filesystem>

#include "envelopefs/volume_config.h"

namespace envelopefs {

// Throws Error(kConfig) naming `file` if the section is missing or invalid.
MasterKeyParams ParseMasterKeyParams(const toml::table& table, const std::filesystem::path& file);
// The [master_key] section's contents for `params`.
toml::table MasterKeyParamsToml(const MasterKeyParams& params);

}  // namespace envelopefs
