// FileHeader — encode, parse, wrap and unwrap the 512-byte header of a cipher file, and the
// pure offset math of its chunks (ChunkLayout).
//
// Pure codec over byte buffers (no I/O): the layout is in file_format.h, the prose in
// envelopefs-format(5). Both format versions are read; BuildHeader writes the current one. The
// fixed part and the key slots are readable without any key (so inspect and audit can count
// files per KEK version); unwrapping the DEK authenticates the fixed part and the slot. State
// slots carry the authenticated plaintext size, flags and (v2) the digest of the chunk index.
// Opening a header with keys (slot and state selection) is cipher_header.h's job.
// All functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "envelopefs/crypto.h"
#include "envelopefs/file_format.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs {

using FileId = std::array<uint8_t, format::kFileIdSize>;
using HeaderBytes = std::array<uint8_t, format::kHeaderSize>;
using KeySlotBytes = std::array<uint8_t, format::kKeySlotSize>;
using ChunkTag = std::array<uint8_t, format::kChunkTagSize>;
using IndexDigest = std::array<uint8_t, format::kIndexDigestSize>;

struct FixedHeader {
  uint16_t version = 0;
  uint8_t cipher = 0;
  uint32_t chunk_size = 0;
  FileId file_id{};
};

struct KeySlotInfo {
  uint64_t generation = 0;
  uint32_t kek_id = 0;
  uint32_t kek_version = 0;
};

// The plaintext size and flags of a file, as recorded in a state slot.
struct FileState {
  uint64_t counter = 0;
  uint64_t size = 0;
  uint32_t flags = 0;
  IndexDigest digest{};  // v2: the chunk-index digest (meaningful when sealed)
  bool sealed() const { return (flags & format::kStateSealed) != 0; }
  bool sparse() const { return (flags & format::kStateSparse) != 0; }
};

// Per-file keys derived from the DEK: one for chunks, one for state slots.
struct FileKeys {
  SecureBytes content;  // 32 bytes
  SecureBytes state;    // 32 bytes
  static FileKeys Derive(const SecureBytes& dek);
};

// Parses and validates the fixed part (magic, version 1 or 2, cipher, chunk size, reserved
// bytes). Throws Error(kFormat) with a description of what is wrong.
FixedHeader ParseFixedHeader(std::span<const uint8_t> header);
KeySlotInfo ParseKeySlot(std::span<const uint8_t, format::kKeySlotSize> slot);

// Builds a complete new header in the current format version: fixed part with `file_id`, both
// key slots holding `dek` wrapped under `kek` (generation `key_generation`), and both state
// slots = records 1 and 2 of {size 0, unsealed}. The file id and DEK are chosen by the caller so
// tests can use fixed vectors; production code passes random ones.
HeaderBytes BuildHeader(uint32_t chunk_size, const FileId& file_id, const SecureBytes& dek,
                        uint32_t kek_id, uint32_t kek_version, const SecureBytes& kek,
                        uint64_t key_generation = 1);

// Wraps `dek` into a key slot bound to the fixed part `fixed` (first 64 header bytes).
KeySlotBytes WrapDek(std::span<const uint8_t> fixed, const KeySlotInfo& info,
                     const SecureBytes& dek, const SecureBytes& kek);
// Unwraps; std::nullopt if the slot does not authenticate under `kek` for this fixed part.
std::optional<SecureBytes> UnwrapDek(std::span<const uint8_t> fixed,
                                     std::span<const uint8_t, format::kKeySlotSize> slot,
                                     const SecureBytes& kek);

// --- state slots ---------------------------------------------------------------------------
// A state slot's size and offset in a header of format `version`.
size_t StateSlotSize(uint16_t version);
size_t StateSlotOffset(uint16_t version, int slot);
// The slot that record number `counter` belongs in.
inline int StateSlotFor(uint64_t counter) { return static_cast<int>((counter - 1) % 2); }

using StateSlotBytes = std::array<uint8_t, format::kMaxStateSlotSize>;  // first StateSlotSize()
StateSlotBytes SealState(uint16_t version, const SecureBytes& state_key, const FileId& file_id,
                         const FileState& state);
std::optional<FileState> OpenState(uint16_t version, const SecureBytes& state_key,
                                   const FileId& file_id, std::span<const uint8_t> slot);

// The newest state record of a header. Both slots authentic: they must hold consecutive
// records, each in its own slot, and the higher one is the state. One slot holding bytes that
// do not authenticate: the record in the other slot is the state, and `note` says so. This is
// what a torn write of the state region leaves, because every writer orders its writes so that
// the record left whole is the state before or after the write (man envelopefs-format(5),
// "Torn writes"). Tampering gains nothing from it: after a seal both slots hold the same sealed
// state; while a file is being changed the older slot holds the last sealed state, whose index
// digest and length no longer match the changed chunks (the open fails), and an older unsealed
// state is what putting back both slots as they were gives anyway (reported as unsealed).
// Anything else is tampering and gives no state: a record in the wrong slot, records that are
// not consecutive (an older copy of a slot), a zeroed slot (only a version-1 file that never
// wrote its second record may leave slot 1 empty), no authentic record. `problem` says why.
struct StateChoice {
  std::optional<FileState> state;
  std::string problem;
  std::string note;  // set when one slot did not authenticate and the other's record was used
};
StateChoice SelectState(const FixedHeader& fixed, const SecureBytes& state_key,
                        std::span<const uint8_t> header);

// --- chunk index (v2) ----------------------------------------------------------------------
// The index digest of `tags` (see ChunkIndex::Digest, which the data path uses).
IndexDigest ComputeIndexDigest(std::span<const ChunkTag> tags);
bool IsZeroTag(const ChunkTag& tag);
// The state record numbered `counter` of a new, empty file (size 0, no flags, empty index).
FileState EmptyFileState(uint64_t counter);

// --- offsets -----------------------------------------------------------------------------
// Offset math of the chunk layout (file_format.h). Pure; every function is total.
struct ChunkLayout {
  uint32_t chunk_size = format::kDefaultChunkSize;
  bool indexed = true;  // v2: an index block after every group of 256 chunks with a successor

  static ChunkLayout Of(const FixedHeader& fixed) {
    return ChunkLayout{fixed.chunk_size, fixed.version >= format::kFormatVersion2};
  }

  uint64_t stride() const { return uint64_t{chunk_size} + format::kChunkOverhead; }
  uint64_t ChunkOffset(uint64_t index) const;
  uint64_t ChunkCount(uint64_t plain_size) const {
    return (plain_size + chunk_size - 1) / chunk_size;
  }
  // Plaintext bytes of chunk `index` in a file of `plain_size` bytes (0 past the end).
  uint64_t ChunkLength(uint64_t index, uint64_t plain_size) const;
  // The chunk at cipher offset `offset` (the next chunk for an offset in the header or in an
  // index block).
  uint64_t ChunkAt(uint64_t offset) const;
  // The group whose chunks or index block (v2) hold cipher offset `offset`.
  uint64_t GroupAt(uint64_t offset) const;
  // Index blocks (v2): group `group`'s block offset; how many groups of a file of `chunk_count`
  // chunks have one (every group but the last: groups [0, IndexBlockCount) are closed).
  uint64_t IndexBlockOffset(uint64_t group) const;
  uint64_t IndexBlockCount(uint64_t chunk_count) const {
    return indexed && chunk_count > 0 ? (chunk_count - 1) / format::kIndexGroupChunks : 0;
  }
  // Cipher file size for a plaintext size.
  uint64_t CipherSize(uint64_t plain_size) const;
  // Plaintext size for a cipher file size; std::nullopt if no plaintext size maps to it
  // (shorter than the header, a last chunk of 1..28 bytes, a cut inside an index block).
  std::optional<uint64_t> PlainSize(uint64_t cipher_size) const;
  // Plaintext size to report for any cipher size: PlainSize, or the best lower bound.
  uint64_t ReportedPlainSize(uint64_t cipher_size) const;
  // True if the plaintext size is the same for every format version (small files), so it can
  // be reported without reading the header.
  bool SizeIsVersionIndependent(uint64_t cipher_size) const;

  // --- range splitting (as gocryptfs's ExplodePlainRange): pure offset math ---

  // The chunks that plaintext bytes [offset, end) of a file of `plain_size` bytes touch, and
  // the stretch of the cipher file that holds them (index blocks in between included).
  // Requires offset < end <= plain_size.
  struct Span {
    uint64_t first, last;           // chunk indexes, inclusive
    uint64_t cipher_lo, cipher_hi;  // [lo, hi) of the cipher file
    uint64_t cipher_len() const { return cipher_hi - cipher_lo; }
  };
  Span SpanOf(uint64_t offset, uint64_t end, uint64_t plain_size) const;

  // The part of chunk `index` (inside the span of [offset, end)) that the range covers.
  struct Part {
    uint64_t length;    // the chunk's plaintext bytes in a file of plain_size bytes
    uint64_t from, to;  // the covered bytes of the chunk: [from, to)
    uint64_t at;        // where byte `from` sits in the range (from the range's start)
    bool whole() const { return from == 0 && to == length; }
  };
  Part PartOf(uint64_t index, uint64_t offset, uint64_t end, uint64_t plain_size) const;
};

// The AAD of chunk `index`: file id || index (LE64).
std::array<uint8_t, format::kFileIdSize + 8> ChunkAad(const FileId& file_id, uint64_t index);

}  // namespace envelopefs
