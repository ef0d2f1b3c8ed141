// Reading secrets (key files, passphrases, PINs) into locked memory, shared by the master-key
// sources (key_source.cc, pkcs11_source.cc). Stateless, thread-safe.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "envelopefs/secure_bytes.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

// Reads up to `max` bytes from `fd` into locked memory; returns the bytes read. Throws Error(kIo)
// naming `what`.
SecureBytes ReadLocked(int fd, size_t max, const std::string& what);

// Opens a key, passphrase or PIN file ("-": standard input), refusing (Error(kUsage)) one that
// group or others may read unless `allow_insecure`.
UniqueFd OpenSecretFile(const std::filesystem::path& path, const char* what, bool allow_insecure);

// The first line of `raw`, without its line terminator.
SecureBytes FirstLine(const SecureBytes& raw);

}  // namespace envelopefs
