// libFuzzer target: opening a cipher file's header with keys (ReadHeader + OpenHeader: key slot
// choice, DEK unwrap, strict state-record selection, length checks), as the daemon, rewrap,
// verify, audit and decrypt open every file.
//
// Input: mode (u8), cipher file length (u64 LE), then the header (usually 512 bytes). Without
// a key almost every mutation fails the key slot's MAC, so the mode can first re-authenticate
// parts of the fuzzed header with the test volume's keys, keeping the fuzzed values in them:
//   bit 0, 1  rewrap key slot 0, 1 (a fixed DEK; the slot's generation kept)
//   bit 2     ... under the fuzzed KEK id and version instead of the active KEK's
//   bit 3, 4  reseal state slot 0, 1 with the fuzzed counter, size, flags and digest
//   bit 5     keep the fuzzed reserved bytes after the rewrapped and resealed records
//   bit 6     OpenHeader checks the cipher length
//   bit 7     the cipher length is the fuzzed one (else the real file's)
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "envelopefs/cipher_header.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "fuzz_support.h"

using namespace envelopefs;
namespace fmt = envelopefs::format;

namespace {

const SecureBytes& FixedDek() {
  static SecureBytes dek = [] {
    SecureBytes d(kKeySize);
    std::fill(d.data(), d.data() + d.size(), 0x5a);
    return d;
  }();
  return dek;
}

void Reauthenticate(uint8_t mode, HeaderBytes& h, const HeaderBytes& fuzzed) {
  const std::span<const uint8_t> fixed(h.data(), fmt::kFixedSize);
  Volume::KekCopy kek = fuzz::TestVolume().ActiveKek();
  for (int i = 0; i < 2; ++i) {
    if ((mode & (1u << i)) == 0) continue;
    uint8_t* slot = h.data() + fmt::kKeySlotOffset[i];
    KeySlotInfo info = ParseKeySlot(std::span<const uint8_t, fmt::kKeySlotSize>(slot, 96));
    if ((mode & 4) == 0) {
      info.kek_id = kek.info.id;
      info.kek_version = kek.info.version;
    }
    KeySlotBytes wrapped = WrapDek(fixed, info, FixedDek(), kek.key);
    std::memcpy(slot, wrapped.data(), fmt::kKeySlotRecordEnd);
    if ((mode & 32) == 0) std::memset(slot + fmt::kKeySlotRecordEnd, 0, 96 - 76);
  }
  const uint16_t version = LoadLe16(h.data() + fmt::kVersionOffset);
  if (version != fmt::kFormatVersion1 && version != fmt::kFormatVersion2) return;
  FileId file_id;
  std::memcpy(file_id.data(), h.data() + fmt::kFileIdOffset, fmt::kFileIdSize);
  FileKeys keys = FileKeys::Derive(FixedDek());
  const size_t slot_size = StateSlotSize(version);
  const size_t tag_end =
      fmt::kStateCipherOffset +
      (version >= fmt::kFormatVersion2 ? fmt::kStatePlainSizeV2 : fmt::kStatePlainSizeV1) +
      fmt::kChunkTagSize;
  for (int i = 0; i < 2; ++i) {
    if ((mode & (8u << i)) == 0) continue;
    const size_t at = StateSlotOffset(version, i);
    const uint8_t* src = fuzzed.data() + at;
    FileState state;
    state.counter = LoadLe64(src + fmt::kStateCounterOffset);
    state.size = LoadLe64(src + fmt::kStateCipherOffset);
    state.flags = LoadLe32(src + fmt::kStateCipherOffset + 8);
    if (version >= fmt::kFormatVersion2) {
      std::memcpy(state.digest.data(), src + fmt::kStateCipherOffset + 16, state.digest.size());
    }
    StateSlotBytes sealed = SealState(version, keys.state, file_id, state);
    std::memcpy(h.data() + at, sealed.data(), tag_end);
    if ((mode & 32) == 0) std::memset(h.data() + at + tag_end, 0, slot_size - tag_end);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const uint64_t fuzzed_length = in.U64() & ((uint64_t{1} << 62) - 1);
  std::span<const uint8_t> bytes = in.Rest();
  std::vector<uint8_t> file(bytes.begin(), bytes.end());
  if (file.size() >= fmt::kHeaderSize) {
    HeaderBytes fuzzed, h;
    std::memcpy(fuzzed.data(), file.data(), fmt::kHeaderSize);
    h = fuzzed;
    Reauthenticate(mode, h, fuzzed);
    std::memcpy(file.data(), h.data(), fmt::kHeaderSize);
  }
  UniqueFd dir = fuzz::FreshDir("header");
  fuzz::WriteFileAt(dir.get(), "file", file);
  UniqueFd fd(::openat(dir.get(), "file", O_RDONLY | O_CLOEXEC));
  HeaderRead header = ReadHeader(fd.get());
  if (mode & 128) header.cipher_size = fuzzed_length;
  if (header.status == HeaderStatus::kOk) {
    fuzz::Check(file.size() >= fmt::kHeaderSize, "a header is read from a short file");
    header.NewestSlot();
    WrappedDekDigest(header, 0);
    WrappedDekDigest(header, 1);
  }
  OpenedHeader opened = OpenHeader(header, fuzz::TestVolume(), (mode & 64) != 0);
  fuzz::Check(opened.ok || !opened.problem.empty(), "a refused header says why");
  if (opened.ok) {
    fuzz::Check(opened.slot == 0 || opened.slot == 1, "the slot that opened is 0 or 1");
    fuzz::Check(opened.dek.size() == kKeySize, "the DEK is 32 bytes");
    DekFingerprint(opened.dek);
    LengthProblem(header, &opened.state);
  }
  return 0;
}
