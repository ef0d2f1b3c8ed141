// ChunkIndex — the tags of a format-2 file's chunks, in memory, and their digest.
//
// Tags are kept in groups of 256 (one index block each, see file_format.h). A group is allocated
// only once it holds a tag that is not all-zero, so holes cost nothing: a sparse 1 PB file with
// a few written chunks takes a few KiB. The digest (file_format.h) likewise visits only the
// groups that hold data. Not synchronized: CipherFile guards it with its own lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "envelopefs/file_header.h"

namespace envelopefs {

class ChunkIndex {
 public:
  using Block = std::array<ChunkTag, format::kIndexGroupChunks>;

  uint64_t count() const { return count_; }
  // Growing adds holes; shrinking forgets the tags past the new end.
  void Resize(uint64_t count);
  void Clear() { Resize(0); }

  // The tag of chunk `index` (< count()); all-zero for a hole.
  const ChunkTag& Get(uint64_t index) const;
  void Set(uint64_t index, const ChunkTag& tag);

  // The index block of group `group`: its 256 tags (zeros for holes and past the end).
  void CopyBlock(uint64_t group, uint8_t* out) const;
  // Sets group `group` from an index block read from disk (entries past count() are ignored).
  void SetBlock(uint64_t group, const uint8_t* block);
  // The tags of chunks [first, last] (one group) as stored in that group's block.
  std::span<const uint8_t> Entries(uint64_t first, uint64_t last) const;
  // Groups in [from, to) that hold a tag that is not all-zero, in order.
  template <typename F>
  void ForEachDataGroup(uint64_t from, uint64_t to, F&& visit) const {
    for (auto it = groups_.lower_bound(from); it != groups_.end() && it->first < to; ++it) {
      visit(it->first);
    }
  }

  // BLAKE2b-256 of "envelopefs index v2" || count u64 || for each group holding data, in order:
  // group number u64 || its index block.
  IndexDigest Digest() const;

 private:
  Block& GroupFor(uint64_t group);
  uint64_t count_ = 0;
  std::map<uint64_t, std::unique_ptr<Block>> groups_;
};

}  // namespace envelopefs
