// The duplicate checks of `envelopectl audit` in bounded memory: distinct files (inodes) that
// share a file id or a DEK, counting hard links to one inode once.
//
// The streaming scan keeps one 40-byte FilePrint per regular file (its inode, 8 bytes of its
// file id and of its DEK fingerprint, its walk index) instead of the file's paths. Sorting the
// prints gives the inode count and the (rare) files whose short fingerprints collide; only
// those are looked at again, with their full file id and DEK fingerprint, by a second walk that
// learns their paths (GroupExact). Short fingerprints can only add candidates, never lose a
// duplicate: the exact grouping decides. Not thread-safe: one DuplicatePrints per worker, merged.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "envelopefs/crypto.h"
#include "envelopefs/file_header.h"

namespace envelopefs::cli {

struct FilePrint {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t file_id = 0;  // the first 8 bytes of the file id, if has_file_id()
  uint64_t dek = 0;      // the first 8 bytes of the DEK fingerprint, if has_dek()
  uint64_t index_and_flags = 0;

  static constexpr uint64_t kHasFileId = 1ull << 63;
  static constexpr uint64_t kHasDek = 1ull << 62;
  static constexpr uint64_t kIndexMask = kHasDek - 1;
  uint64_t index() const { return index_and_flags & kIndexMask; }
  bool has_file_id() const { return (index_and_flags & kHasFileId) != 0; }
  bool has_dek() const { return (index_and_flags & kHasDek) != 0; }
};
static_assert(sizeof(FilePrint) == 40, "the documented memory per file");

FilePrint MakePrint(uint64_t walk_index, dev_t dev, ino_t ino, const std::optional<FileId>& file_id,
                    const std::optional<Sha256Digest>& dek);

// What the prints tell once every file was scanned.
struct DuplicateCandidates {
  uint64_t inodes = 0;  // distinct (dev, ino): hard links count once
  // Walk indices (sorted, unique) of the first name of inodes whose short file id, or short
  // DEK fingerprint, is also another inode's.
  std::vector<uint64_t> file_id_indices;
  std::vector<uint64_t> dek_indices;
};

// Consumes `prints` (all workers' prints, in any order).
DuplicateCandidates FindCandidates(std::vector<FilePrint> prints);

// A candidate seen again by the second walk: its full key, walk index and cipher path.
template <typename Key>
struct Candidate {
  Key key;
  uint64_t index;
  std::string cipher_path;
};

// The groups (arrays of cipher paths) of two or more candidates sharing the full key: groups
// in key order, paths in walk order (the report's order).
template <typename Key>
nlohmann::json GroupExact(std::vector<Candidate<Key>> candidates);

extern template nlohmann::json GroupExact<FileId>(std::vector<Candidate<FileId>>);
extern template nlohmann::json GroupExact<Sha256Digest>(std::vector<Candidate<Sha256Digest>>);

}  // namespace envelopefs::cli
