// The [master_key] section (how the master key is obtained) as the keyring (format 2) and a
// format-1 config store it. It is read before anything can be authenticated (the key is derived
// from it), so it is parsed strictly and its Argon2id limits bounded (KdfParams::Bounded).
// Pure, thread-safe.
#pragma once

#include <toml++/toml.h>

#include <filesystem>

#include "envelopefs/volume_config.h"

namespace envelopefs {

// Throws Error(kConfig) naming `file` if the section is missing or invalid.
MasterKeyParams ParseMasterKeyParams(const toml::table& table, const std::filesystem::path& file);

}  // namespace envelopefs
