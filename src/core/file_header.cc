#include "envelopefs/file_header.h"

#include <cstring>
#include <string>
#include <vector>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {
namespace {

using namespace format;

std::vector<uint8_t> DekAad(std::span<const uint8_t> fixed, const KeySlotBytes& slot) {
  constexpr size_t kLabelSize = sizeof kDekWrapLabel - 1;
  std::vector<uint8_t> aad(kLabelSize + kFixedSize + kKeySlotBoundSize);
  std::memcpy(aad.data(), kDekWrapLabel, kLabelSize);
  std::memcpy(aad.data() + kLabelSize, fixed.data(), kFixedSize);
  std::memcpy(aad.data() + kLabelSize + kFixedSize, slot.data(), kKeySlotBoundSize);
  return aad;
}

std::array<uint8_t, sizeof kStateLabel - 1 + kFileIdSize + 8> StateAad(const FileId& file_id,
                                                                       uint64_t counter) {
  std::array<uint8_t, sizeof kStateLabel - 1 + kFileIdSize + 8> aad{};
  std::memcpy(aad.data(), kStateLabel, sizeof kStateLabel - 1);
  std::memcpy(aad.data() + sizeof kStateLabel - 1, file_id.data(), kFileIdSize);
  StoreLe64(aad.data() + sizeof kStateLabel - 1 + kFileIdSize, counter);
  return aad;
}

bool AllZero(std::span<const uint8_t> bytes) {
  uint8_t acc = 0;
  for (uint8_t b : bytes) acc |= b;
  return acc == 0;
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
  if (h.version != kFormatVersion) {
    throw Error(ErrorKind::kFormat, "unsupported format version " + std::to_string(h.version));
  }
  h.cipher = header[kCipherOffset];
  if (h.cipher != kCipherAes256Gcm) {
    throw Error(ErrorKind::kFormat, "unknown cipher id " + std::to_string(h.cipher));
  }
  h.chunk_size = LoadLe32(header.data() + kChunkSizeOffset);
  if (h.chunk_size < kMinChunkSize || h.chunk_size > kMaxChunkSize ||
      (h.chunk_size & (h.chunk_size - 1)) != 0) {
    throw Error(ErrorKind::kFormat, "invalid chunk size " + std::to_string(h.chunk_size));
  }
  if (header[11] != 0 || !AllZero(header.subspan(32, 32))) {
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
  if (dek.size() != kKeySize) throw Error(ErrorKind::kIo, "WrapDek: DEK must be 32 bytes");
  KeySlotBytes slot{};
  StoreLe64(slot.data() + kKeySlotGenerationOffset, info.generation);
  StoreLe32(slot.data() + kKeySlotKekIdOffset, info.kek_id);
  StoreLe32(slot.data() + kKeySlotKekVersionOffset, info.kek_version);
  GcmNonce nonce = RandomNonce();
  std::memcpy(slot.data() + kKeySlotNonceOffset, nonce.data(), nonce.size());
  std::vector<uint8_t> aad = DekAad(fixed, slot);
  ThreadAead().Seal(kek.span(), nonce, aad, dek.span(),
                    std::span<uint8_t>(slot.data() + kKeySlotWrappedOffset, kKeySize),
                    std::span<uint8_t, kGcmTagSize>(slot.data() + kKeySlotTagOffset, kGcmTagSize));
  return slot;
}

std::optional<SecureBytes> UnwrapDek(std::span<const uint8_t> fixed,
                                     std::span<const uint8_t, kKeySlotSize> slot,
                                     const SecureBytes& kek) {
  KeySlotBytes copy;
  std::memcpy(copy.data(), slot.data(), kKeySlotSize);
  std::vector<uint8_t> aad = DekAad(fixed, copy);
  SecureBytes dek(kKeySize);
  bool ok = ThreadAead().Open(
      kek.span(), std::span<const uint8_t, kGcmNonceSize>(slot.data() + kKeySlotNonceOffset, 12),
      aad, slot.subspan(kKeySlotWrappedOffset, kKeySize),
      std::span<const uint8_t, kGcmTagSize>(slot.data() + kKeySlotTagOffset, kGcmTagSize),
      dek.mutable_span());
  if (!ok) return std::nullopt;
  return dek;
}

StateSlotBytes SealState(const SecureBytes& state_key, const FileId& file_id,
                         const FileState& state) {
  StateSlotBytes slot{};
  StoreLe64(slot.data() + kStateCounterOffset, state.counter);
  GcmNonce nonce = RandomNonce();
  std::memcpy(slot.data() + kStateNonceOffset, nonce.data(), nonce.size());
  std::array<uint8_t, kStatePlainSize> plain{};
  StoreLe64(plain.data(), state.size);
  StoreLe32(plain.data() + 8, state.flags);
  auto aad = StateAad(file_id, state.counter);
  ThreadAead().Seal(state_key.span(), nonce, aad, plain,
                    std::span<uint8_t>(slot.data() + kStateCipherOffset, kStatePlainSize),
                    std::span<uint8_t, kGcmTagSize>(slot.data() + kStateTagOffset, kGcmTagSize));
  return slot;
}

std::optional<FileState> OpenState(const SecureBytes& state_key, const FileId& file_id,
                                   std::span<const uint8_t, kStateSlotSize> slot) {
  FileState state;
  state.counter = LoadLe64(slot.data() + kStateCounterOffset);
  if (state.counter == 0) return std::nullopt;  // never written
  auto aad = StateAad(file_id, state.counter);
  std::array<uint8_t, kStatePlainSize> plain{};
  bool ok = ThreadAead().Open(
      state_key.span(),
      std::span<const uint8_t, kGcmNonceSize>(slot.data() + kStateNonceOffset, kGcmNonceSize), aad,
      slot.subspan(kStateCipherOffset, kStatePlainSize),
      std::span<const uint8_t, kGcmTagSize>(slot.data() + kStateTagOffset, kGcmTagSize), plain);
  if (!ok) return std::nullopt;
  state.size = LoadLe64(plain.data());
  state.flags = LoadLe32(plain.data() + 8);
  if ((state.flags & ~kStateKnownFlags) != 0 || LoadLe32(plain.data() + 12) != 0) {
    return std::nullopt;  // a newer format's flags: refuse rather than misinterpret
  }
  return state;
}

HeaderBytes BuildHeader(uint32_t chunk_size, const FileId& file_id, const SecureBytes& dek,
                        uint32_t kek_id, uint32_t kek_version, const SecureBytes& kek) {
  HeaderBytes header{};
  std::memcpy(header.data() + kMagicOffset, kMagic.data(), kMagic.size());
  StoreLe16(header.data() + kVersionOffset, kFormatVersion);
  header[kCipherOffset] = kCipherAes256Gcm;
  StoreLe32(header.data() + kChunkSizeOffset, chunk_size);
  std::memcpy(header.data() + kFileIdOffset, file_id.data(), kFileIdSize);
  ParseFixedHeader(header);  // validates the chunk size

  std::span<const uint8_t> fixed(header.data(), kFixedSize);
  for (size_t i = 0; i < 2; ++i) {
    KeySlotBytes slot = WrapDek(fixed, KeySlotInfo{1, kek_id, kek_version}, dek, kek);
    std::memcpy(header.data() + kKeySlotOffset[i], slot.data(), kKeySlotSize);
  }
  FileKeys keys = FileKeys::Derive(dek);
  StateSlotBytes state = SealState(keys.state, file_id, FileState{1, 0, 0});
  std::memcpy(header.data() + kStateSlotOffset[0], state.data(), kStateSlotSize);
  return header;
}

uint64_t ChunkLayout::CipherSize(uint64_t plain_size) const {
  uint64_t full = plain_size / chunk_size;
  uint64_t rest = plain_size % chunk_size;
  return kHeaderSize + full * stride() + (rest ? rest + kChunkOverhead : 0);
}

std::optional<uint64_t> ChunkLayout::PlainSize(uint64_t cipher_size) const {
  if (cipher_size < kHeaderSize) return std::nullopt;
  uint64_t body = cipher_size - kHeaderSize;
  uint64_t full = body / stride();
  uint64_t rest = body % stride();
  if (rest != 0 && rest <= kChunkOverhead) return std::nullopt;
  return full * chunk_size + (rest ? rest - kChunkOverhead : 0);
}

uint64_t ChunkLayout::ReportedPlainSize(uint64_t cipher_size) const {
  if (cipher_size < kHeaderSize) return 0;
  if (auto size = PlainSize(cipher_size)) return *size;
  return (cipher_size - kHeaderSize) / stride() * chunk_size;
}

std::array<uint8_t, kFileIdSize + 8> ChunkAad(const FileId& file_id, uint64_t index) {
  std::array<uint8_t, kFileIdSize + 8> aad{};
  std::memcpy(aad.data(), file_id.data(), kFileIdSize);
  StoreLe64(aad.data() + kFileIdSize, index);
  return aad;
}

}  // namespace envelopefs
