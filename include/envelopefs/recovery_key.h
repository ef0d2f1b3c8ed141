// Recovery keys — a random 256-bit master key for a recovery slot of the keyring, shown once as
// text to be printed or written down and kept offline, and typed back (from a file or standard
// input) to open the volume when its other master sources are lost.
//
// The text is 64 lowercase hex digits in 16 groups of 4 joined by '-'
// ("1a2b-3c4d-...-ff00"). Reading accepts upper or lower case and ignores '-', spaces, tabs and
// newlines anywhere, so a copy typed from paper reads back; anything else is an error. The key
// and its text live in locked memory. Functions are pure and thread-safe; the sources are
// immutable (the file source reads its file on each MasterKey call).
#pragma once

#include <filesystem>
#include <memory>

#include "envelopefs/key_source.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs {

// A fresh recovery key (32 bytes from the OS CSPRNG).
SecureBytes NewRecoveryKey();
// Its text form, without a newline (79 characters).
SecureBytes FormatRecoveryKey(const SecureBytes& key);
// The 32-byte key written in `text`, or nullopt if `text` is not one.
std::optional<SecureBytes> ParseRecoveryKey(std::span<const uint8_t> text);

// Reads a recovery key's text from `path` ("-": standard input). The file must not be readable
// by group or others unless `allow_insecure` (like a key file).
std::unique_ptr<MasterKeySource> MakeRecoveryKeyFileSource(const std::filesystem::path& path,
                                                           bool allow_insecure = false);
// The source of a recovery key just made with NewRecoveryKey (for adding its slot).
std::unique_ptr<MasterKeySource> MakeNewRecoveryKeySource(const SecureBytes& key);

}  // namespace envelopefs
