// Test support shared by the unit and integration tests: making a file system give a deleted
// file's inode number to a new file, as it does behind the daemon's back when a sync tool
// replaces files in the cipher dir.
// Thread safety: none needed (one test thread; the files are the caller's).
#pragma once

#include <sys/types.h>

#include <filesystem>

namespace envelopefs::testing {

// Creates empty files in `dir` until one gets inode number `ino` (a number freed just before:
// ext4 hands out the lowest free number of the directory's group, so this takes a few files at
// most), and removes the others. The file's path, or an empty path if `tries` files never got
// it (another file system, or another process took the number first).
std::filesystem::path CreateFileWithInodeNumber(const std::filesystem::path& dir, ino_t ino,
                                                int tries = 5000);

}  // namespace envelopefs::testing
