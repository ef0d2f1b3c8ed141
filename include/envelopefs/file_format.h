// The byte layout of an envelopefs cipher file, shared by its reader and writer.
//
// Prose, rationale and the guarantees live in man/envelopefs-format.5; this header is the single
// source of truth for offsets and sizes. All integers are little-endian. Changing anything here
// changes the on-disk format: bump kFormatVersion and keep a reader for the old one. New files
// are always written in kFormatVersion; version-1 files are still read and written in place.
//
//   offset  size  field (version 2; version 1 differences marked "v1:")
//   ------  ----  ------------------------------------------------------------------------
//   0       64    fixed part (written at create; only a truncation to zero rewrites it, with
//                 the same file id and the current version)
//     0       8     magic "ENVLPFS\x01"
//     8       2     format version (2; v1: 1)
//     10      1     cipher id (1 = AES-256-GCM)
//     11      1     reserved, 0
//     12      4     chunk size: plaintext bytes per chunk (4096 .. 1048576, a power of two)
//     16      16    file id: random, fresh for every file
//     32      32    reserved, 0
//   64      96    key slot 0  } the wrapped DEK; two copies so that rewriting one (rewrap) can
//   160     96    key slot 1  } tear without losing the file. Layout of a key slot:
//     0       8     generation (incremented by every rewrap)
//     8       4     KEK id
//     12      4     KEK version
//     16      12    nonce
//     28      32    DEK, AES-256-GCM-encrypted under the KEK
//     60      16    GCM tag. AAD = "envelopefs dek v1" || fixed part (64) || slot bytes 0..15
//     76      20    reserved, 0
//   256     128   state slot 0 } the authenticated plaintext size, flags and chunk-index digest,
//   384     128   state slot 1 } written by the daemon. Record number c lives in slot (c-1) % 2;
//                                the two slots always hold consecutive records. Layout:
//     0       8     record number c (counter)
//     8       12    nonce
//     20      48    encrypted: plaintext size u64, flags u32, reserved u32 (0), index digest (32)
//     68      16    GCM tag under the state key. AAD = "envelopefs state v2" || file id || c
//     84      44    reserved, 0
//                 v1: two 64-byte slots at 256 and 320 (counter 8, nonce 12, encrypted 16:
//                 size u64 + flags u32 + reserved u32, tag 16 with AAD "envelopefs state v1" ||
//                 file id || counter, 12 reserved), and 384..511 reserved.
//   512     ...   chunks and (v2) index blocks. Chunk i (stride = chunk size + 28):
//     0       12    nonce (fresh random on every write)
//     12      n     ciphertext (n = chunk size, or less for the last chunk)
//     12+n    16    GCM tag under the content key. AAD = file id || chunk index u64
//                 Chunks form groups of 256. v2: the 4096-byte index block of group g (the 256
//                 chunk tags of the group, 16 bytes each, all-zero for holes) follows the
//                 group's last chunk once a later chunk exists; the last group has none.
//                 Chunk i starts at 512 + i * stride + (i / 256) * 4096 (v1: 512 + i * stride).
//
// Keys: content key = HKDF-SHA256(DEK, "envelopefs content v1"), state key =
// HKDF-SHA256(DEK, "envelopefs state v1"). Index digest (v2) = BLAKE2b-256 of
// "envelopefs index v2" || chunk count u64 || for every group holding a tag that is not all-zero,
// in order: group number u64 || the group's 256 tags (zeros for holes and past the last chunk).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace envelopefs::format {

inline constexpr std::array<uint8_t, 8> kMagic = {'E', 'N', 'V', 'L', 'P', 'F', 'S', 0x01};
inline constexpr uint16_t kFormatVersion1 = 1;
inline constexpr uint16_t kFormatVersion2 = 2;
inline constexpr uint16_t kFormatVersion = kFormatVersion2;  // what new files are written in
inline constexpr uint8_t kCipherAes256Gcm = 1;

inline constexpr size_t kFixedSize = 64;
inline constexpr size_t kMagicOffset = 0;
inline constexpr size_t kVersionOffset = 8;
inline constexpr size_t kCipherOffset = 10;
inline constexpr size_t kChunkSizeOffset = 12;
inline constexpr size_t kFileIdOffset = 16;
inline constexpr size_t kFileIdSize = 16;

inline constexpr size_t kKeySlotSize = 96;
inline constexpr size_t kKeySlotOffset[2] = {64, 160};
inline constexpr size_t kKeySlotGenerationOffset = 0;
inline constexpr size_t kKeySlotKekIdOffset = 8;
inline constexpr size_t kKeySlotKekVersionOffset = 12;
inline constexpr size_t kKeySlotBoundSize = 16;  // slot bytes bound as AAD
inline constexpr size_t kKeySlotNonceOffset = 16;
inline constexpr size_t kKeySlotWrappedOffset = 28;
inline constexpr size_t kKeySlotTagOffset = 60;
inline constexpr size_t kKeySlotRecordEnd = 76;  // nonce .. tag: the wrapped-DEK record
inline constexpr char kDekWrapLabel[] = "envelopefs dek v1";

// State slots, per version (index: version - 1).
inline constexpr size_t kStateRegionOffset = 256;
inline constexpr size_t kStateSlotSizeV1 = 64;
inline constexpr size_t kStateSlotSizeV2 = 128;
inline constexpr size_t kStateCounterOffset = 0;
inline constexpr size_t kStateNonceOffset = 8;
inline constexpr size_t kStateCipherOffset = 20;
inline constexpr size_t kStatePlainSizeV1 = 16;  // size u64, flags u32, reserved u32
inline constexpr size_t kStatePlainSizeV2 = 48;  // ... and the 32-byte index digest
inline constexpr size_t kStateTagOffsetV1 = kStateCipherOffset + kStatePlainSizeV1;  // 36
inline constexpr size_t kStateTagOffsetV2 = kStateCipherOffset + kStatePlainSizeV2;  // 68
inline constexpr char kStateLabelV1[] = "envelopefs state v1";
inline constexpr char kStateLabelV2[] = "envelopefs state v2";
inline constexpr size_t kMaxStateSlotSize = kStateSlotSizeV2;

// State flags.
inline constexpr uint32_t kStateSealed = 1u << 0;  // size (and digest) exact: closed/fsynced
inline constexpr uint32_t kStateSparse = 1u << 1;  // the file may hold holes (all-zero chunks)
inline constexpr uint32_t kStateKnownFlags = kStateSealed | kStateSparse;

inline constexpr size_t kHeaderSize = 512;
inline constexpr size_t kChunkNonceSize = 12;
inline constexpr size_t kChunkTagSize = 16;
inline constexpr size_t kChunkOverhead = kChunkNonceSize + kChunkTagSize;

// Index blocks (v2).
inline constexpr uint64_t kIndexGroupChunks = 256;
inline constexpr size_t kIndexEntrySize = kChunkTagSize;
inline constexpr size_t kIndexBlockSize = kIndexGroupChunks * kIndexEntrySize;  // 4096
inline constexpr char kIndexDigestLabel[] = "envelopefs index v2";
inline constexpr size_t kIndexDigestSize = 32;

inline constexpr uint32_t kMinChunkSize = 4096;
inline constexpr uint32_t kMaxChunkSize = 1u << 20;
inline constexpr uint32_t kDefaultChunkSize = 16384;  // see bench/RESULTS.md
// The chunk sizes the format can hold: powers of two from 4 KiB to 1 MiB.
inline constexpr bool IsValidChunkSize(uint64_t size) {
  return size >= kMinChunkSize && size <= kMaxChunkSize && (size & (size - 1)) == 0;
}

inline constexpr char kContentKeyLabel[] = "envelopefs content v1";
inline constexpr char kStateKeyLabel[] = "envelopefs state v1";

}  // namespace envelopefs::format
