// ChunkIndex — see chunk_index.h.
#include "envelopefs/chunk_index.h"

#include <sodium.h>

#include <cstring>

#include "envelopefs/encoding.h"

namespace envelopefs {
namespace {

using format::kIndexBlockSize;
using format::kIndexGroupChunks;

const ChunkTag kZeroTag{};

}  // namespace

ChunkIndex::Block& ChunkIndex::GroupFor(uint64_t group) {
  std::unique_ptr<Block>& block = groups_[group];
  if (!block) block = std::make_unique<Block>();  // value-initialized: all holes
  return *block;
}

void ChunkIndex::Resize(uint64_t count) {
  if (count < count_) {
    const uint64_t keep_groups = (count + kIndexGroupChunks - 1) / kIndexGroupChunks;
    groups_.erase(groups_.lower_bound(keep_groups), groups_.end());
    if (count % kIndexGroupChunks != 0) {
      auto it = groups_.find(count / kIndexGroupChunks);
      if (it != groups_.end()) {
        Block& block = *it->second;
        for (uint64_t i = count % kIndexGroupChunks; i < kIndexGroupChunks; ++i) block[i] = {};
      }
    }
  }
  count_ = count;
}

const ChunkTag& ChunkIndex::Get(uint64_t index) const {
  auto it = groups_.find(index / kIndexGroupChunks);
  return it == groups_.end() ? kZeroTag : (*it->second)[index % kIndexGroupChunks];
}

void ChunkIndex::Set(uint64_t index, const ChunkTag& tag) {
  const uint64_t group = index / kIndexGroupChunks;
  if (IsZeroTag(tag) && groups_.find(group) == groups_.end()) return;  // already a hole
  GroupFor(group)[index % kIndexGroupChunks] = tag;
}

void ChunkIndex::CopyBlock(uint64_t group, uint8_t* out) const {
  auto it = groups_.find(group);
  if (it == groups_.end()) {
    std::memset(out, 0, kIndexBlockSize);
  } else {
    std::memcpy(out, it->second->data(), kIndexBlockSize);
  }
}

void ChunkIndex::SetBlock(uint64_t group, const uint8_t* block) {
  const uint64_t first = group * kIndexGroupChunks;
  if (first >= count_) return;
  const uint64_t n = std::min<uint64_t>(kIndexGroupChunks, count_ - first);
  if (IsAllZero({block, n * format::kChunkTagSize})) {
    groups_.erase(group);
    return;
  }
  Block& b = GroupFor(group);
  std::memcpy(b.data(), block, n * format::kChunkTagSize);
  for (uint64_t i = n; i < kIndexGroupChunks; ++i) b[i] = {};
}

std::span<const uint8_t> ChunkIndex::Entries(uint64_t first, uint64_t last) const {
  static const Block kZeroBlock{};
  auto it = groups_.find(first / kIndexGroupChunks);
  const Block& block = it == groups_.end() ? kZeroBlock : *it->second;
  return std::span<const uint8_t>(block[first % kIndexGroupChunks].data(),
                                  (last - first + 1) * format::kChunkTagSize);
}

IndexDigest ChunkIndex::Digest() const {
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, format::kIndexDigestSize);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(format::kIndexDigestLabel),
                            sizeof format::kIndexDigestLabel - 1);
  uint8_t number[8];
  StoreLe64(number, count_);
  crypto_generichash_update(&state, number, sizeof number);
  for (const auto& [group, block] : groups_) {
    if (IsAllZero({block->front().data(), kIndexBlockSize})) continue;
    StoreLe64(number, group);
    crypto_generichash_update(&state, number, sizeof number);
    crypto_generichash_update(&state, block->front().data(), kIndexBlockSize);
  }
  IndexDigest digest{};
  crypto_generichash_final(&state, digest.data(), digest.size());
  return digest;
}

}  // namespace envelopefs
