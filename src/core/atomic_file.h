// AtomicFile — crash-safe replacement and bounded reads of small files (the volume config and
// keyring, directory IVs, long-name side files).
//
// A replacement writes a temp file in the same directory, fsyncs it, renames it over the target
// and fsyncs the directory, so that at every instant the target holds either the old or the
// new content in full. Thread-safe (each call uses its own temp file).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace envelopefs {

// --- relative to a directory descriptor (which may be O_PATH); 0 or -errno ------------------

// Writes `data` to a fresh temp file in `dirfd` and renames it to `name` (replacing it, or
// -EEXIST when `no_replace`), durably.
int WriteFileAtomicallyAt(int dirfd, const std::string& name, std::span<const uint8_t> data,
                          mode_t mode, bool no_replace);
// fsync(2) of the directory `dirfd`.
int SyncDirectoryAt(int dirfd);
// The whole of the open regular file `fd` if it holds at most `limit` bytes, else std::nullopt.
std::optional<std::vector<uint8_t>> ReadSmallFileAt(int fd, size_t limit);
// A fresh random temp name with the volume's temp prefix (never a user entry).
std::string RandomTempName();

// --- by name in a directory; throw Error ---------------------------------------------------

// Replaces `name` in `dirfd` with `content` (mode `mode`). Throws Error(kIo) naming `display`
// on failure; the old content is then untouched.
void ReplaceFileIn(int dirfd, const std::string& name, std::string_view content, mode_t mode,
                   const std::string& display);

// Reads the whole small regular file `name` in `dirfd` (at most `max_size` bytes), never
// following a symlink and never opening a FIFO or device. std::nullopt (errno set) if it cannot
// be opened or read; Error(kConfig) naming `display` if it is larger than `max_size`.
std::optional<std::string> ReadSmallFileIn(int dirfd, const std::string& name, size_t max_size,
                                           const std::string& display);

}  // namespace envelopefs
