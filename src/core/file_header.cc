// FileHeader — see file_header.h; the layout is in file_format.h.
#include "envelopefs/file_header.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "envelopefs/chunk_index.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {
namespace {

using namespace format;

std::vector<uint8_t> DekAad(std::span<const uint8_t> fixed, std::span<const uint8_t> slot) {
  constexpr size_t kLabelSize = sizeof kDekWrapLabel - 1;
  std::vector<uint8_t> aad(kLabelSize + kFixedSize + kKeySlotBoundSize);
  std::memcpy(aad.data(), kDekWrapLabel, kLabelSize);
  std::memcpy(aad.data() + kLabelSize, fixed.data(), kFixedSize);
  std::memcpy(aad.data() + kLabelSize + kFixedSize, slot.data(), kKeySlotBoundSize);
  return aad;
}

const char* StateLabel(uint16_t version) {
  return version >= kFormatVersion2 ? kStateLabelV2 : kStateLabelV1;
}

std::vector<uint8_t> StateAad(uint16_t version, const FileId& file_id, uint64_t counter) {
  const char* label = StateLabel(version);
  const size_t label_size = std::strlen(label);
  std::vector<uint8_t> aad(label_size + kFileIdSize + 8);
  std::memcpy(aad.data(), label, label_size);
  std::memcpy(aad.data() + label_size, file_id.data(), kFileIdSize);
  StoreLe64(aad.data() + label_size + kFileIdSize, counter);
  return aad;
}

size_t StatePlainSize(uint16_t version) {
  return version >= kFormatVersion2 ? kStatePlainSizeV2 : kStatePlainSizeV1;
}

}  // namespace

FileKeys FileKeys::Derive(const SecureBytes& dek) {
  return FileKeys{DeriveKey(dek.span(), kContentKeyLabel), DeriveKey(dek.span(), kStateKeyLabel)};
}

FixedHeader ParseFixedHeader(std::span<const uint8_t> header) {
  if (header.size() < kFixedSize) throw Error(ErrorKind::kFormat, "file too short for a header");
  if (std::memcmp(header.data(), kMagic.data(), kMagic.size()) != 0) {
    throw Error(ErrorKind::kFormat, "not an envelopefs file (bad magic)");
  }
  FixedHeader h;
  h.version = LoadLe16(header.data() + kVersionOffset);
  if (h.version != kFormatVersion1 && h.version != kFormatVersion2) {
    throw Error(ErrorKind::kFormat, "unsupported format version " + std::to_string(h.version));
  }
  h.cipher = header[kCipherOffset];
  if (h.cipher != kCipherAes256Gcm) {
    throw Error(ErrorKind::kFormat, "unknown cipher id " + std::to_string(h.cipher));
  }
  h.chunk_size = LoadLe32(header.data() + kChunkSizeOffset);
  if (!IsValidChunkSize(h.chunk_size)) {
    throw Error(ErrorKind::kFormat, "invalid chunk size " + std::to_string(h.chunk_size));
  }
  if (header[11] != 0 || !IsAllZero(header.subspan(32, 32))) {
    throw Error(ErrorKind::kFormat, "reserved header bytes are not zero");
  }
  std::memcpy(h.file_id.data(), header.data() + kFileIdOffset, kFileIdSize);
  return h;
}

KeySlotInfo ParseKeySlot(std::span<const uint8_t, kKeySlotSize> slot) {
  return KeySlotInfo{LoadLe64(slot.data() + kKeySlotGenerationOffset),
                     LoadLe32(slot.data() + kKeySlotKekIdOffset),
                     LoadLe32(slot.data() + kKeySlotKekVersionOffset)};
}

KeySlotBytes WrapDek(std::span<const uint8_t> fixed, const KeySlotInfo& info,
                     const SecureBytes& dek, const SecureBytes& kek) {
  if (dek.size() != kKeySize) throw std::logic_error("WrapDek: the DEK must be 32 bytes");
  KeySlotBytes slot{};
  StoreLe64(slot.data() + kKeySlotGenerationOffset, info.generation);
  StoreLe32(slot.data() + kKeySlotKekIdOffset, info.kek_id);
  StoreLe32(slot.data() + kKeySlotKekVersionOffset, info.kek_version);
  GcmNonce nonce = RandomNonce();
  std::memcpy(slot.data() + kKeySlotNonceOffset, nonce.data(), nonce.size());
  std::vector<uint8_t> aad = DekAad(fixed, slot);
  SealWithWrappingKey(
      kek.span(), nonce, aad, dek.span(),
      std::span<uint8_t>(slot.data() + kKeySlotWrappedOffset, kKeySize),
      std::span<uint8_t, kGcmTagSize>(slot.data() + kKeySlotTagOffset, kGcmTagSize));
  return slot;
}

std::optional<SecureBytes> UnwrapDek(std::span<const uint8_t> fixed,
                                     std::span<const uint8_t, kKeySlotSize> slot,
                                     const SecureBytes& kek) {
  std::vector<uint8_t> aad = DekAad(fixed, slot);
  SecureBytes dek(kKeySize);
  bool ok = OpenWithWrappingKey(
      kek.span(),
      std::span<const uint8_t, kGcmNonceSize>(slot.data() + kKeySlotNonceOffset, kGcmNonceSize),
      aad, slot.subspan(kKeySlotWrappedOffset, kKeySize),
      std::span<const uint8_t, kGcmTagSize>(slot.data() + kKeySlotTagOffset, kGcmTagSize),
      dek.mutable_span());
  if (!ok) return std::nullopt;
  return dek;
}

// --- state slots ---------------------------------------------------------------------------

size_t StateSlotSize(uint16_t version) {
  return version >= kFormatVersion2 ? kStateSlotSizeV2 : kStateSlotSizeV1;
}

size_t StateSlotOffset(uint16_t version, int slot) {
  return kStateRegionOffset + static_cast<size_t>(slot) * StateSlotSize(version);
}

StateSlotBytes SealState(uint16_t version, const SecureBytes& state_key, const FileId& file_id,
                         const FileState& state) {
  StateSlotBytes slot{};
  StoreLe64(slot.data() + kStateCounterOffset, state.counter);
  GcmNonce nonce = RandomNonce();
  std::memcpy(slot.data() + kStateNonceOffset, nonce.data(), nonce.size());
  const size_t plain_size = StatePlainSize(version);
  std::array<uint8_t, kStatePlainSizeV2> plain{};
  StoreLe64(plain.data(), state.size);
  StoreLe32(plain.data() + 8, state.flags);
  if (version >= kFormatVersion2) std::memcpy(plain.data() + 16, state.digest.data(), 32);
  std::vector<uint8_t> aad = StateAad(version, file_id, state.counter);
  ThreadAead().Seal(
      state_key.span(), nonce, aad, std::span<const uint8_t>(plain.data(), plain_size),
      std::span<uint8_t>(slot.data() + kStateCipherOffset, plain_size),
      std::span<uint8_t, kGcmTagSize>(slot.data() + kStateCipherOffset + plain_size, kGcmTagSize));
  return slot;
}

std::optional<FileState> OpenState(uint16_t version, const SecureBytes& state_key,
                                   const FileId& file_id, std::span<const uint8_t> slot) {
  const size_t plain_size = StatePlainSize(version);
  if (slot.size() != StateSlotSize(version)) return std::nullopt;
  FileState state;
  state.counter = LoadLe64(slot.data() + kStateCounterOffset);
  if (state.counter == 0) return std::nullopt;  // never written
  // Reserved bytes after the tag must be zero: nothing unauthenticated rides along.
  if (!IsAllZero(slot.subspan(kStateCipherOffset + plain_size + kGcmTagSize))) return std::nullopt;
  std::vector<uint8_t> aad = StateAad(version, file_id, state.counter);
  std::array<uint8_t, kStatePlainSizeV2> plain{};
  bool ok = ThreadAead().Open(
      state_key.span(),
      std::span<const uint8_t, kGcmNonceSize>(slot.data() + kStateNonceOffset, kGcmNonceSize), aad,
      slot.subspan(kStateCipherOffset, plain_size),
      std::span<const uint8_t, kGcmTagSize>(slot.data() + kStateCipherOffset + plain_size,
                                            kGcmTagSize),
      std::span<uint8_t>(plain.data(), plain_size));
  if (!ok) return std::nullopt;
  state.size = LoadLe64(plain.data());
  state.flags = LoadLe32(plain.data() + 8);
  if ((state.flags & ~kStateKnownFlags) != 0 || LoadLe32(plain.data() + 12) != 0) {
    return std::nullopt;  // a newer format's flags: refuse rather than misinterpret
  }
  if (version >= kFormatVersion2) std::memcpy(state.digest.data(), plain.data() + 16, 32);
  return state;
}

StateChoice SelectState(const FixedHeader& fixed, const SecureBytes& state_key,
                        std::span<const uint8_t> header) {
  StateChoice choice;
  const size_t size = StateSlotSize(fixed.version);
  if (header.size() < StateSlotOffset(fixed.version, 1) + size) {
    choice.problem = "header too short for its state records";
    return choice;
  }
  std::optional<FileState> slot[2];
  bool empty[2];
  int unauthentic = -1;  // the one slot that holds bytes which do not authenticate
  for (int i = 0; i < 2; ++i) {
    std::span<const uint8_t> bytes = header.subspan(StateSlotOffset(fixed.version, i), size);
    empty[i] = IsAllZero(bytes);
    if (empty[i]) continue;
    slot[i] = OpenState(fixed.version, state_key, fixed.file_id, bytes);
    if (!slot[i]) {
      if (unauthentic >= 0) {
        choice.problem = "no state record authenticates";
        return choice;
      }
      unauthentic = i;
      continue;
    }
    if (StateSlotFor(slot[i]->counter) != i) {
      choice.problem = "state record " + std::to_string(i) + " is in the wrong slot";
      return choice;
    }
  }
  if (unauthentic >= 0) {
    // A write of the state records that tore (the writers order their writes so that the
    // record left whole is then the state before or after it), or tampering, which gains
    // nothing: see the declaration.
    const int other = 1 - unauthentic;
    if (!slot[other]) {
      choice.problem = "state record " + std::to_string(unauthentic) +
                       " does not authenticate and the other is missing (zeroed)";
      return choice;
    }
    choice.state = slot[other];
    choice.note = "state record " + std::to_string(unauthentic) +
                  " does not authenticate (a torn header write, or tampering); record " +
                  std::to_string(slot[other]->counter) + " in the other slot is used";
    return choice;
  }
  if (empty[0] && empty[1]) {
    choice.problem = "no state record";
  } else if (empty[0] || empty[1]) {
    // Only a version-1 file whose only record is its first one (slot 0) has an empty slot.
    const bool first_only = fixed.version == kFormatVersion1 && !empty[0] && slot[0]->counter == 1;
    if (first_only) {
      choice.state = slot[0];
    } else {
      choice.problem = "a state record is missing (zeroed)";
    }
  } else {
    const FileState& newer = slot[0]->counter > slot[1]->counter ? *slot[0] : *slot[1];
    const FileState& older = slot[0]->counter > slot[1]->counter ? *slot[1] : *slot[0];
    if (newer.counter != older.counter + 1) {
      choice.problem = "state records are not consecutive (one is an older copy)";
    } else {
      choice.state = newer;
    }
  }
  return choice;
}

HeaderBytes BuildHeader(uint32_t chunk_size, const FileId& file_id, const SecureBytes& dek,
                        uint32_t kek_id, uint32_t kek_version, const SecureBytes& kek,
                        uint64_t key_generation) {
  HeaderBytes header{};
  std::memcpy(header.data() + kMagicOffset, kMagic.data(), kMagic.size());
  StoreLe16(header.data() + kVersionOffset, kFormatVersion);
  header[kCipherOffset] = kCipherAes256Gcm;
  StoreLe32(header.data() + kChunkSizeOffset, chunk_size);
  std::memcpy(header.data() + kFileIdOffset, file_id.data(), kFileIdSize);
  ParseFixedHeader(header);  // validates the chunk size

  std::span<const uint8_t> fixed(header.data(), kFixedSize);
  for (size_t i = 0; i < 2; ++i) {
    KeySlotBytes slot = WrapDek(fixed, KeySlotInfo{key_generation, kek_id, kek_version}, dek, kek);
    std::memcpy(header.data() + kKeySlotOffset[i], slot.data(), kKeySlotSize);
  }
  FileKeys keys = FileKeys::Derive(dek);
  for (uint64_t counter : {1, 2}) {
    StateSlotBytes bytes = SealState(kFormatVersion, keys.state, file_id, EmptyFileState(counter));
    std::memcpy(header.data() + StateSlotOffset(kFormatVersion, StateSlotFor(counter)),
                bytes.data(), StateSlotSize(kFormatVersion));
  }
  return header;
}

// --- chunk index ---------------------------------------------------------------------------

IndexDigest ComputeIndexDigest(std::span<const ChunkTag> tags) {
  ChunkIndex index;
  index.Resize(tags.size());
  for (size_t i = 0; i < tags.size(); ++i) index.Set(i, tags[i]);
  return index.Digest();
}

bool IsZeroTag(const ChunkTag& tag) { return IsAllZero(tag); }

FileState EmptyFileState(uint64_t counter) {
  static const IndexDigest kEmptyIndex = ComputeIndexDigest({});
  return FileState{counter, 0, 0, kEmptyIndex};
}

// --- offsets -------------------------------------------------------------------------------

uint64_t ChunkLayout::ChunkOffset(uint64_t index) const {
  uint64_t offset = kHeaderSize + index * stride();
  if (indexed) offset += index / kIndexGroupChunks * kIndexBlockSize;
  return offset;
}

uint64_t ChunkLayout::ChunkAt(uint64_t offset) const {
  if (offset < kHeaderSize) return 0;
  const uint64_t body = offset - kHeaderSize;
  if (!indexed) return body / stride();
  const uint64_t span = kIndexGroupChunks * stride() + kIndexBlockSize;
  const uint64_t group = body / span, rest = body % span;
  if (rest >= kIndexGroupChunks * stride()) return (group + 1) * kIndexGroupChunks;
  return group * kIndexGroupChunks + rest / stride();
}

uint64_t ChunkLayout::GroupAt(uint64_t offset) const {
  if (offset < kHeaderSize) return 0;
  const uint64_t span = kIndexGroupChunks * stride() + (indexed ? kIndexBlockSize : 0);
  return (offset - kHeaderSize) / span;
}

uint64_t ChunkLayout::ChunkLength(uint64_t index, uint64_t plain_size) const {
  const uint64_t start = index * chunk_size;
  return plain_size > start ? std::min<uint64_t>(chunk_size, plain_size - start) : 0;
}

uint64_t ChunkLayout::IndexBlockOffset(uint64_t group) const {
  // Right after the group's last chunk.
  return ChunkOffset((group + 1) * kIndexGroupChunks - 1) + stride();
}

uint64_t ChunkLayout::CipherSize(uint64_t plain_size) const {
  const uint64_t n = ChunkCount(plain_size);
  if (n == 0) return kHeaderSize;
  return ChunkOffset(n - 1) + ChunkLength(n - 1, plain_size) + kChunkOverhead;
}

std::optional<uint64_t> ChunkLayout::PlainSize(uint64_t cipher_size) const {
  if (cipher_size < kHeaderSize) return std::nullopt;
  uint64_t body = cipher_size - kHeaderSize;
  if (body == 0) return 0;
  // Whole groups that are followed by their index block (v2), then the last group's chunks.
  uint64_t groups = 0;
  if (indexed) {
    const uint64_t span = kIndexGroupChunks * stride() + kIndexBlockSize;
    groups = body / span;
    body %= span;
    if (body == 0) return std::nullopt;  // an index block is always followed by a chunk
  }
  const uint64_t full = body / stride();
  const uint64_t rest = body % stride();
  if (rest != 0 && rest <= kChunkOverhead) return std::nullopt;
  const uint64_t chunks = full + (rest != 0 ? 1 : 0);
  if (indexed && chunks > kIndexGroupChunks) return std::nullopt;  // cut inside an index block
  return (groups * kIndexGroupChunks + full) * chunk_size + (rest ? rest - kChunkOverhead : 0);
}

uint64_t ChunkLayout::ReportedPlainSize(uint64_t cipher_size) const {
  if (cipher_size < kHeaderSize) return 0;
  if (auto size = PlainSize(cipher_size)) return *size;
  // The whole chunks that fit below the cut.
  uint64_t low = 0, high = (cipher_size - kHeaderSize) / stride() + 1;  // chunk counts
  while (low < high) {
    const uint64_t mid = (low + high + 1) / 2;
    if (CipherSize(mid * chunk_size) <= cipher_size) {
      low = mid;
    } else {
      high = mid - 1;
    }
  }
  return low * chunk_size;
}

bool ChunkLayout::SizeIsVersionIndependent(uint64_t cipher_size) const {
  // Index blocks only exist once a file has more than one group of chunks.
  return cipher_size <= kHeaderSize + kIndexGroupChunks * stride();
}

ChunkLayout::Span ChunkLayout::SpanOf(uint64_t offset, uint64_t end, uint64_t plain_size) const {
  Span span;
  span.first = offset / chunk_size;
  span.last = (end - 1) / chunk_size;
  span.cipher_lo = ChunkOffset(span.first);
  span.cipher_hi = ChunkOffset(span.last) + ChunkLength(span.last, plain_size) + kChunkOverhead;
  return span;
}

ChunkLayout::Part ChunkLayout::PartOf(uint64_t index, uint64_t offset, uint64_t end,
                                      uint64_t plain_size) const {
  const uint64_t start = index * chunk_size;
  Part part;
  part.length = ChunkLength(index, plain_size);
  part.from = std::max(offset, start) - start;
  part.to = std::min(end, start + part.length) - start;
  part.at = start + part.from - offset;
  return part;
}

std::array<uint8_t, kFileIdSize + 8> ChunkAad(const FileId& file_id, uint64_t index) {
  std::array<uint8_t, kFileIdSize + 8> aad{};
  std::memcpy(aad.data(), file_id.data(), kFileIdSize);
  StoreLe64(aad.data() + kFileIdSize, index);
  return aad;
}

}  // namespace envelopefs
