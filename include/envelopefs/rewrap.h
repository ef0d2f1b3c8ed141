// Rewrap — moves files' DEKs to the active KEK version by rewriting only their key slots.
//
// Header-only I/O: the chunks are never read or written, so the cost per file does not depend
// on its size. Crash-safe at every instant: files are processed in batches; each file's new
// record first goes to one key slot (the one that does not hold the only valid record), the
// file system is synced once per batch (syncfs), then the same record goes to the other slot
// and the file system is synced again. A file always has at least one slot that opens with the
// old or the new KEK, and running again finishes the job.
//
// Safe while the volume is mounted: the daemon writes only state slots after creating a file,
// and rewrap writes only key slots, so their writes never overlap; the one exception, the
// daemon rewriting a whole header when a file is truncated to zero (a fresh DEK), takes the
// same flock(2) on the file that rewrap holds while it reads a header and writes a slot. The
// daemon reloads the keyring when it meets a KEK version it does not know yet. Files are opened
// below the volume's root fd without following symlinks (OpenBeneath); every file system the
// batch touched is synced. Thread-safe: RewrapFiles may run on several threads for disjoint
// file lists.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "envelopefs/damage_reporter.h"
#include "envelopefs/volume.h"

namespace envelopefs {

struct RewrapStats {
  uint64_t examined = 0;
  uint64_t rewrapped = 0;
  uint64_t already_current = 0;  // the newest slot already uses the active version
  uint64_t skipped = 0;          // not an envelopefs file (or still being created)
  uint64_t failed = 0;           // no slot authenticates with any known KEK
  RewrapStats& operator+=(const RewrapStats& o);
};

// Rewraps every file in `files` (cipher paths relative to the cipher dir) to `target`
// (normally Volume::ActiveKek()). `on_file` is called after each file with its outcome (for
// progress and error reporting); may be null. A file that gets a new record is first reported
// as kFirstSlotWritten (half done: for a progress display that moves file by file) and again,
// after its batch's sync, with its final outcome. A file whose header is damaged or tampered
// with (no key slot authenticates) is also reported to `reporter`, before its kFailed outcome.
// Throws Error(kIo) only if syncing the file systems fails; per-file failures are outcomes.
enum class RewrapOutcome { kRewrapped, kCurrent, kSkipped, kFailed, kFirstSlotWritten };
RewrapStats RewrapFiles(
    const Volume& volume, const Volume::KekCopy& target, std::span<const std::string> files,
    const std::function<void(const std::string&, RewrapOutcome, const std::string& why)>& on_file,
    DamageReporter& reporter);

// The number of files RewrapFiles keeps open at once (one batch); callers size their slices
// of the work so that jobs x kRewrapBatch stays within the descriptor limit.
inline constexpr size_t kRewrapBatch = 2048;

// Deterministic shard of a cipher path relative to the cipher dir: FNV-1a 64 modulo `count`.
uint32_t ShardOf(const std::string& relative_cipher_path, uint32_t count);

}  // namespace envelopefs
