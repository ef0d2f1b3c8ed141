// AtomicFile — crash-safe replacement of a small file (the volume config and keyring).
//
// Writes to a temp file in the same directory, fsyncs it, renames it over the target and fsyncs
// the directory, so that at every instant the target holds either the old or the new content in
// full. Thread-safe (each call uses its own temp file).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace envelopefs {

// Replaces `path` with `content` (mode `mode`). Throws Error(kIo) naming the file on failure;
// the old content is then untouched.
void WriteFileAtomically(const std::filesystem::path& path, std::string_view content, mode_t mode);

// Reads a whole small file (at most `max_size` bytes). std::nullopt (errno set) if it cannot be
// opened or read; Error(kConfig) naming the file if it is larger than `max_size`.
std::optional<std::string> ReadSmallFile(const std::filesystem::path& path, size_t max_size);

}  // namespace envelopefs
