// The byte layout of an envelopefs cipher file, shared by its reader and writer.
//
// Prose, rationale and the guarantees live in man/envelopefs-format.5; this header is the single
// source of truth for offsets and sizes. All integers are little-endian. Changing anything here
// changes the on-disk format: bump kFormatVersion and keep a reader for the old one.
//
//   offset  size  field
//   ------  ----  ------------------------------------------------------------------------
//   0       64    fixed part (written once at create, never changed)
//     0       8     magic "ENVLPFS\x01"
//     8       2     format version (1)
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
//   256     64    state slot 0 } the authenticated plaintext size and flags, written by the
//   320     64    state slot 1 } daemon, alternating slots. Layout of a state slot:
//     0       8     counter (incremented on every write; the higher valid slot wins)
//     8       12    nonce
//     20      16    encrypted: plaintext size u64, flags u32, reserved u32 (0)
//     36      16    GCM tag under the state key. AAD = "envelopefs state v1" || file id ||
//                   counter
//     52      12    reserved, 0
//   384     128   reserved, 0
//   512     ...   chunks. Chunk i starts at 512 + i * (chunk size + 28):
//     0       12    nonce (fresh random on every write)
//     12      n     ciphertext (n = chunk size, or less for the last chunk)
//     12+n    16    GCM tag under the content key. AAD = file id || chunk index u64
//
// Keys: content key = HKDF-SHA256(DEK, "envelopefs content v1"), state key =
// HKDF-SHA256(DEK, "envelopefs state v1").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace envelopefs::format {

inline constexpr std::array<uint8_t, 8> kMagic = {'E', 'N', 'V', 'L', 'P', 'F', 'S', 0x01};
inline constexpr uint16_t kFormatVersion = 1;
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
inline constexpr char kDekWrapLabel[] = "envelopefs dek v1";

inline constexpr size_t kStateSlotSize = 64;
inline constexpr size_t kStateSlotOffset[2] = {256, 320};
inline constexpr size_t kStateCounterOffset = 0;
inline constexpr size_t kStateNonceOffset = 8;
inline constexpr size_t kStateCipherOffset = 20;
inline constexpr size_t kStatePlainSize = 16;
inline constexpr size_t kStateTagOffset = 36;
inline constexpr char kStateLabel[] = "envelopefs state v1";

// State flags.
inline constexpr uint32_t kStateSealed = 1u << 0;  // size is exact: the file was closed/fsynced
inline constexpr uint32_t kStateSparse = 1u << 1;  // the file may hold holes (all-zero chunks)
inline constexpr uint32_t kStateKnownFlags = kStateSealed | kStateSparse;

inline constexpr size_t kHeaderSize = 512;
inline constexpr size_t kChunkNonceSize = 12;
inline constexpr size_t kChunkTagSize = 16;
inline constexpr size_t kChunkOverhead = kChunkNonceSize + kChunkTagSize;

inline constexpr uint32_t kMinChunkSize = 4096;
inline constexpr uint32_t kMaxChunkSize = 1u << 20;
inline constexpr uint32_t kDefaultChunkSize = 16384;  // see bench/RESULTS.md

inline constexpr char kContentKeyLabel[] = "envelopefs content v1";
inline constexpr char kStateKeyLabel[] = "envelopefs state v1";

}  // namespace envelopefs::format
