// FileHeader — encode, parse, wrap and unwrap the 512-byte header of a cipher file.
//
// Pure codec over byte buffers (no I/O): the layout is in file_format.h, the prose in
// envelopefs-format(5). The fixed part and the key slots are readable without any key (so
// inspect and audit can count files per KEK version); unwrapping the DEK authenticates the
// fixed part and the slot. State slots carry the authenticated plaintext size and flags.
// All functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "envelopefs/crypto.h"
#include "envelopefs/file_format.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs {

using FileId = std::array<uint8_t, format::kFileIdSize>;
using HeaderBytes = std::array<uint8_t, format::kHeaderSize>;
using KeySlotBytes = std::array<uint8_t, format::kKeySlotSize>;
using StateSlotBytes = std::array<uint8_t, format::kStateSlotSize>;

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
  bool sealed() const { return (flags & format::kStateSealed) != 0; }
  bool sparse() const { return (flags & format::kStateSparse) != 0; }
};

// Per-file keys derived from the DEK: one for chunks, one for state slots.
struct FileKeys {
  SecureBytes content;  // 32 bytes
  SecureBytes state;    // 32 bytes
  static FileKeys Derive(const SecureBytes& dek);
};

// Parses and validates the fixed part (magic, version, cipher, chunk size, reserved bytes).
// Throws Error(kFormat) with a description of what is wrong.
FixedHeader ParseFixedHeader(std::span<const uint8_t> header);
KeySlotInfo ParseKeySlot(std::span<const uint8_t, format::kKeySlotSize> slot);

// Builds a complete new header: fixed part with a fresh random file id, both key slots holding
// `dek` wrapped under `kek`, and state slot 0 = {counter 1, size 0, unsealed}. `file_id_out` and
// the DEK are chosen by the caller so tests can use fixed vectors; production code passes
// random ones (see NewRandomHeader in cipher_file.h).
HeaderBytes BuildHeader(uint32_t chunk_size, const FileId& file_id, const SecureBytes& dek,
                        uint32_t kek_id, uint32_t kek_version, const SecureBytes& kek);

// Wraps `dek` into a key slot bound to the fixed part `fixed` (first 64 header bytes).
KeySlotBytes WrapDek(std::span<const uint8_t> fixed, const KeySlotInfo& info,
                     const SecureBytes& dek, const SecureBytes& kek);
// Unwraps; std::nullopt if the slot does not authenticate under `kek` for this fixed part.
std::optional<SecureBytes> UnwrapDek(std::span<const uint8_t> fixed,
                                     std::span<const uint8_t, format::kKeySlotSize> slot,
                                     const SecureBytes& kek);

StateSlotBytes SealState(const SecureBytes& state_key, const FileId& file_id,
                         const FileState& state);
std::optional<FileState> OpenState(const SecureBytes& state_key, const FileId& file_id,
                                   std::span<const uint8_t, format::kStateSlotSize> slot);

// Offset math of the chunk layout. Pure; see file_format.h.
struct ChunkLayout {
  uint32_t chunk_size = format::kDefaultChunkSize;

  uint64_t stride() const { return uint64_t{chunk_size} + format::kChunkOverhead; }
  uint64_t ChunkOffset(uint64_t index) const { return format::kHeaderSize + index * stride(); }
  uint64_t ChunkIndex(uint64_t plain_offset) const { return plain_offset / chunk_size; }
  uint64_t ChunkCount(uint64_t plain_size) const {
    return (plain_size + chunk_size - 1) / chunk_size;
  }
  // Cipher file size for a plaintext size.
  uint64_t CipherSize(uint64_t plain_size) const;
  // Plaintext size for a cipher file size; std::nullopt if no plaintext size maps to it
  // (shorter than the header, or a last chunk of 1..28 bytes).
  std::optional<uint64_t> PlainSize(uint64_t cipher_size) const;
  // Plaintext size to report for any cipher size: PlainSize, or the best lower bound.
  uint64_t ReportedPlainSize(uint64_t cipher_size) const;
};

// The AAD of chunk `index`: file id || index (LE64).
std::array<uint8_t, format::kFileIdSize + 8> ChunkAad(const FileId& file_id, uint64_t index);

}  // namespace envelopefs
