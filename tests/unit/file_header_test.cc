// Unit tests of the header and chunk codec, and the format's fixed test vectors.
#include "envelopefs/file_header.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

using namespace format;
namespace fs = std::filesystem;

SecureBytes Pattern(uint8_t start, size_t n = kKeySize) {
  SecureBytes out(n);
  for (size_t i = 0; i < n; ++i) out.data()[i] = static_cast<uint8_t>(start + i);
  return out;
}

FileId PatternId(uint8_t start) {
  FileId id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(start + i);
  return id;
}

TEST(FileHeader, LayoutOffsetsAreTheDocumentedOnes) {
  SecureBytes kek = Pattern(0), dek = Pattern(0x40);
  HeaderBytes h = BuildHeader(4096, PatternId(0xA0), dek, 0x11223344, 7, kek);
  EXPECT_EQ(0, std::memcmp(h.data(), "ENVLPFS\x01", 8));
  EXPECT_EQ(2, LoadLe16(h.data() + 8));
  EXPECT_EQ(1, h[10]);
  EXPECT_EQ(0, h[11]);
  EXPECT_EQ(4096u, LoadLe32(h.data() + 12));
  EXPECT_EQ(0xA0, h[16]);
  EXPECT_EQ(0xAF, h[31]);
  for (size_t i = 32; i < 64; ++i) EXPECT_EQ(0, h[i]) << i;
  for (size_t slot : {64u, 160u}) {
    EXPECT_EQ(1u, LoadLe64(h.data() + slot));
    EXPECT_EQ(0x11223344u, LoadLe32(h.data() + slot + 8));
    EXPECT_EQ(7u, LoadLe32(h.data() + slot + 12));
    for (size_t i = 76; i < 96; ++i) EXPECT_EQ(0, h[slot + i]);
  }
  EXPECT_EQ(1u, LoadLe64(h.data() + 256));  // state slot 0, record 1
  EXPECT_EQ(2u, LoadLe64(h.data() + 384));  // state slot 1, record 2
  for (size_t slot : {256u, 384u}) {
    for (size_t i = 84; i < 128; ++i) EXPECT_EQ(0, h[slot + i]) << slot + i;
  }
  // The DEK never appears in the clear.
  EXPECT_EQ(std::search(h.begin(), h.end(), dek.data(), dek.data() + 32), h.end());
}

TEST(FileHeader, UnwrapsWithTheRightKekOnly) {
  SecureBytes kek = Pattern(0), dek = Pattern(0x40), other = Pattern(1);
  HeaderBytes h = BuildHeader(65536, PatternId(0xA0), dek, 1, 1, kek);
  std::span<const uint8_t, kKeySlotSize> slot(h.data() + kKeySlotOffset[0], kKeySlotSize);
  auto got = UnwrapDek(std::span(h.data(), kFixedSize), slot, kek);
  ASSERT_TRUE(got);
  EXPECT_TRUE(ConstantTimeEqual(got->span(), dek.span()));
  EXPECT_FALSE(UnwrapDek(std::span(h.data(), kFixedSize), slot, other));
}

TEST(FileHeader, AnyChangeToTheFixedPartOrSlotBreaksTheWrap) {
  SecureBytes kek = Pattern(0), dek = Pattern(0x40);
  HeaderBytes h = BuildHeader(65536, PatternId(0xA0), dek, 1, 1, kek);
  for (size_t i : {0u, 9u, 12u, 16u, 31u, 40u, 64u + 0u, 64u + 8u, 64u + 12u, 64u + 20u, 64u + 40u,
                   64u + 70u}) {
    HeaderBytes t = h;
    t[i] ^= 0x01;
    std::span<const uint8_t, kKeySlotSize> slot(t.data() + kKeySlotOffset[0], kKeySlotSize);
    EXPECT_FALSE(UnwrapDek(std::span(t.data(), kFixedSize), slot, kek)) << "byte " << i;
  }
}

TEST(FileHeader, ParseRejectsForeignAndDamagedHeaders) {
  SecureBytes kek = Pattern(0), dek = Pattern(0x40);
  HeaderBytes h = BuildHeader(4096, PatternId(0), dek, 1, 1, kek);
  EXPECT_NO_THROW(ParseFixedHeader(h));
  auto expect_format_error = [](HeaderBytes t) {
    try {
      ParseFixedHeader(t);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kFormat, e.kind());
    }
  };
  HeaderBytes t = h;
  t[0] = 'X';
  expect_format_error(t);
  t = h;
  StoreLe16(t.data() + 8, 3);
  expect_format_error(t);
  t = h;
  t[10] = 9;
  expect_format_error(t);
  t = h;
  StoreLe32(t.data() + 12, 5000);
  expect_format_error(t);
  t = h;
  StoreLe32(t.data() + 12, 2048);
  expect_format_error(t);
  t = h;
  t[40] = 1;
  expect_format_error(t);
  EXPECT_THROW(ParseFixedHeader(std::span<const uint8_t>(h.data(), 10)), Error);
}

TEST(FileHeader, StateRoundTripAndTamper) {
  SecureBytes key = Pattern(9);
  FileId id = PatternId(3);
  for (uint16_t version : {kFormatVersion1, kFormatVersion2}) {
    FileState s{5, 123456789, kStateSealed | kStateSparse, {}};
    s.digest.fill(0x5a);
    StateSlotBytes bytes = SealState(version, key, id, s);
    std::span<const uint8_t> slot(bytes.data(), StateSlotSize(version));
    auto got = OpenState(version, key, id, slot);
    ASSERT_TRUE(got);
    EXPECT_EQ(5u, got->counter);
    EXPECT_EQ(123456789u, got->size);
    EXPECT_TRUE(got->sealed());
    EXPECT_TRUE(got->sparse());
    if (version == kFormatVersion2) {
      EXPECT_EQ(s.digest, got->digest);
    }
    EXPECT_FALSE(OpenState(version, key, PatternId(4), slot));  // another file's record
    const uint16_t other = version == kFormatVersion1 ? kFormatVersion2 : kFormatVersion1;
    EXPECT_FALSE(
        OpenState(other, key, id, std::span<const uint8_t>(bytes.data(), StateSlotSize(other))));
    for (size_t i = 0; i < slot.size(); ++i) {
      StateSlotBytes t = bytes;
      t[i] ^= 0x80;
      EXPECT_FALSE(OpenState(version, key, id, std::span<const uint8_t>(t.data(), slot.size())))
          << "version " << version << " byte " << i;
    }
  }
}

// A header whose state slots hold `records` (counter 0 = slot left all-zero).
HeaderBytes WithStates(const HeaderBytes& base, const SecureBytes& state_key, const FileId& id,
                       std::initializer_list<FileState> records) {
  HeaderBytes h = base;
  std::memset(h.data() + 256, 0, 256);
  for (const FileState& r : records) {
    StateSlotBytes bytes = SealState(kFormatVersion2, state_key, id, r);
    std::memcpy(h.data() + StateSlotOffset(kFormatVersion2, StateSlotFor(r.counter)), bytes.data(),
                StateSlotSize(kFormatVersion2));
  }
  return h;
}

TEST(FileHeader, StateSelectionIsStrictButForOneUnauthenticSlot) {
  SecureBytes kek = Pattern(0), dek = Pattern(0x40);
  FileId id = PatternId(0xA0);
  HeaderBytes base = BuildHeader(4096, id, dek, 1, 1, kek);
  FixedHeader fixed = ParseFixedHeader(base);
  FileKeys keys = FileKeys::Derive(dek);
  FileState unsealed{3, 0, 0, {}}, sealed4{4, 9000, kStateSealed, {}},
      sealed5{5, 9000, kStateSealed, {}};
  // Two consecutive records: the newer wins.
  auto ok = SelectState(fixed, keys.state, WithStates(base, keys.state, id, {sealed4, sealed5}));
  ASSERT_TRUE(ok.state) << ok.problem;
  EXPECT_EQ(5u, ok.state->counter);
  ok = SelectState(fixed, keys.state, WithStates(base, keys.state, id, {unsealed, sealed4}));
  ASSERT_TRUE(ok.state);
  EXPECT_TRUE(ok.state->sealed());
  // The newer record zeroed: never falls back to the older, unsealed one.
  auto zeroed = SelectState(fixed, keys.state, WithStates(base, keys.state, id, {unsealed}));
  EXPECT_FALSE(zeroed.state);
  EXPECT_NE(std::string::npos, zeroed.problem.find("missing")) << zeroed.problem;
  // One record damaged (what a torn write leaves): the other is used, and the choice says so.
  HeaderBytes damaged = WithStates(base, keys.state, id, {sealed4, sealed5});
  damaged[StateSlotOffset(kFormatVersion2, StateSlotFor(5)) + 30] ^= 1;
  auto torn = SelectState(fixed, keys.state, damaged);
  ASSERT_TRUE(torn.state) << torn.problem;
  EXPECT_EQ(4u, torn.state->counter);
  EXPECT_NE(std::string::npos, torn.note.find("does not authenticate")) << torn.note;
  EXPECT_TRUE(ok.note.empty()) << ok.note;
  // Both damaged, or one damaged and the other zeroed: no state.
  damaged[StateSlotOffset(kFormatVersion2, StateSlotFor(4)) + 30] ^= 1;
  EXPECT_FALSE(SelectState(fixed, keys.state, damaged).state);
  HeaderBytes half = WithStates(base, keys.state, id, {sealed5});
  half[StateSlotOffset(kFormatVersion2, StateSlotFor(5)) + 30] ^= 1;
  EXPECT_FALSE(SelectState(fixed, keys.state, half).state);
  // A slot replaced by an older copy of itself: records 3 and 6 are not consecutive.
  FileState six{6, 1, kStateSealed, {}};
  auto replayed = SelectState(fixed, keys.state, WithStates(base, keys.state, id, {unsealed, six}));
  EXPECT_FALSE(replayed.state);
  // A record in the wrong slot.
  HeaderBytes swapped = WithStates(base, keys.state, id, {sealed4, sealed5});
  std::swap_ranges(swapped.begin() + 256, swapped.begin() + 384, swapped.begin() + 384);
  EXPECT_FALSE(SelectState(fixed, keys.state, swapped).state);
  // Both empty.
  EXPECT_FALSE(SelectState(fixed, keys.state, WithStates(base, keys.state, id, {})).state);
}

TEST(ChunkLayout, SizesRoundTrip) {
  for (bool indexed : {false, true}) {
    for (uint32_t chunk : {4096u, 16384u, 1u << 20}) {
      ChunkLayout layout{chunk, indexed};
      const uint64_t c = chunk, g = kIndexGroupChunks * c;
      for (uint64_t plain :
           std::vector<uint64_t>{0, 1, 100, c - 1, c, c + 1, 10 * c, 10 * c + 7, g - 1, g, g + 1,
                                 2 * g, 2 * g + c, 3 * g - 5, uint64_t{1} << 40}) {
        uint64_t cipher = layout.CipherSize(plain);
        ASSERT_EQ(plain, layout.PlainSize(cipher)) << chunk << " " << plain << " " << indexed;
        ASSERT_EQ(plain, layout.ReportedPlainSize(cipher));
      }
      EXPECT_FALSE(layout.PlainSize(100));                           // shorter than the header
      EXPECT_FALSE(layout.PlainSize(kHeaderSize + 1));               // 1 byte: not a chunk
      EXPECT_FALSE(layout.PlainSize(kHeaderSize + kChunkOverhead));  // an empty chunk
      EXPECT_EQ(1u, layout.PlainSize(kHeaderSize + kChunkOverhead + 1));
      EXPECT_EQ(kHeaderSize + 3 * layout.stride(), layout.ChunkOffset(3));
    }
  }
  // Format 2: the index block of group 0 sits between chunks 255 and 256.
  ChunkLayout v2{4096, true};
  EXPECT_EQ(kHeaderSize + 256 * v2.stride(), v2.IndexBlockOffset(0));
  EXPECT_EQ(v2.IndexBlockOffset(0) + kIndexBlockSize, v2.ChunkOffset(256));
  EXPECT_EQ(0u, v2.IndexBlockCount(256));  // group 0 has no block while it is the last
  EXPECT_EQ(1u, v2.IndexBlockCount(257));
  // A file ending right after an index block, or inside one, has no plaintext size.
  EXPECT_FALSE(v2.PlainSize(v2.IndexBlockOffset(0) + kIndexBlockSize));
  EXPECT_FALSE(v2.PlainSize(v2.IndexBlockOffset(0) + 100));
  EXPECT_EQ(256u * 4096, v2.ReportedPlainSize(v2.IndexBlockOffset(0) + 100));
  EXPECT_TRUE(v2.SizeIsVersionIndependent(v2.CipherSize(256 * 4096)));
  EXPECT_FALSE(v2.SizeIsVersionIndependent(v2.CipherSize(256 * 4096 + 1)));
  EXPECT_EQ(1u << 20, ChunkLayout{4096}.CipherSize(0) + (1u << 20) - kHeaderSize);
}

TEST(ChunkLayout, IndexDigestCoversCountOrderAndTags) {
  std::vector<ChunkTag> tags(3);
  for (size_t i = 0; i < tags.size(); ++i) tags[i].fill(static_cast<uint8_t>(i + 1));
  IndexDigest d = ComputeIndexDigest(tags);
  std::vector<ChunkTag> swapped = {tags[1], tags[0], tags[2]};
  EXPECT_NE(d, ComputeIndexDigest(swapped));
  std::vector<ChunkTag> shorter(tags.begin(), tags.end() - 1);
  EXPECT_NE(d, ComputeIndexDigest(shorter));
  std::vector<ChunkTag> changed = tags;
  changed[2][15] ^= 1;
  EXPECT_NE(d, ComputeIndexDigest(changed));
  EXPECT_NE(ComputeIndexDigest({}), ComputeIndexDigest(std::vector<ChunkTag>(1)));
}

// --- fixed test vectors ---------------------------------------------------------------------
// tests/data/v1/file-4096.bin is a version-1 cipher file written once, when version 1 was
// current (golden: no test ever rewrites it). KEK = 00 01 .. 1f (id 0x0a0b0c0d, version 3),
// DEK = 40 41 .. 5f, file id = a0 .. af, chunk size 4096, plaintext = 5000 bytes: byte i =
// (i * 7 + 3) & 0xff. Sealed, size 5000, in state slot 1 (record 2); slot 0 holds record 1.

constexpr uint64_t kVectorSize = 5000;

std::vector<uint8_t> VectorPlaintext() {
  std::vector<uint8_t> p(kVectorSize);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>((i * 7 + 3) & 0xff);
  return p;
}

std::string VectorPath() { return std::string(ENVELOPEFS_TEST_DATA_DIR) + "/v1/file-4096.bin"; }

TEST(FormatVectors, Version1FileStillDecrypts) {
  std::ifstream in(VectorPath(), std::ios::binary);
  ASSERT_TRUE(in) << VectorPath();
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ChunkLayout layout{4096, /*indexed=*/false};
  ASSERT_EQ(layout.CipherSize(kVectorSize), file.size());

  FixedHeader fixed = ParseFixedHeader(file);
  EXPECT_EQ(1, fixed.version);
  EXPECT_EQ(4096u, fixed.chunk_size);
  EXPECT_EQ(PatternId(0xA0), fixed.file_id);
  KeySlotInfo slot = ParseKeySlot(std::span<const uint8_t, kKeySlotSize>(file.data() + 64, 96));
  EXPECT_EQ(0x0a0b0c0du, slot.kek_id);
  EXPECT_EQ(3u, slot.kek_version);

  SecureBytes kek = Pattern(0);
  auto dek = UnwrapDek(std::span(file.data(), kFixedSize),
                       std::span<const uint8_t, kKeySlotSize>(file.data() + 160, 96), kek);
  ASSERT_TRUE(dek);
  EXPECT_TRUE(ConstantTimeEqual(dek->span(), Pattern(0x40).span()));
  FileKeys keys = FileKeys::Derive(*dek);
  auto state = OpenState(kFormatVersion1, keys.state, fixed.file_id,
                         std::span<const uint8_t>(file.data() + 320, 64));
  ASSERT_TRUE(state);
  StateChoice choice = SelectState(fixed, keys.state, file);
  ASSERT_TRUE(choice.state) << choice.problem;
  EXPECT_EQ(2u, choice.state->counter);
  EXPECT_TRUE(state->sealed());
  EXPECT_EQ(kVectorSize, state->size);

  std::vector<uint8_t> plain(kVectorSize);
  for (uint64_t i = 0; i < 2; ++i) {
    size_t len = std::min<uint64_t>(4096, kVectorSize - i * 4096);
    const uint8_t* c = file.data() + layout.ChunkOffset(i);
    auto aad = ChunkAad(fixed.file_id, i);
    ASSERT_TRUE(ThreadAead().Open(keys.content.span(), std::span<const uint8_t, 12>(c, 12), aad,
                                  std::span<const uint8_t>(c + 12, len),
                                  std::span<const uint8_t, 16>(c + 12 + len, 16),
                                  std::span<uint8_t>(plain.data() + i * 4096, len)));
  }
  EXPECT_EQ(VectorPlaintext(), plain);
}

// The volume vector `dir`, opened in a copy (a test never touches the vector) that is removed
// again once the volume is open.
std::unique_ptr<Volume> OpenCopyOf(const fs::path& dir) {
  testing::TempDir copy("envelopefs-v2file");
  fs::copy(dir, copy.path() / "volume",
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  return Volume::Open(copy.path() / "volume",
                      *MakeKeyFileSource(dir.parent_path() / "volume.key", true));
}

// A format-2 cipher file of the volume vector (tests/data/v2, "indexed.bin": 300 chunks of 4096
// bytes, data in chunks 0 and 256 and the 4-byte last one, holes between), decoded by hand from
// the documented layout, so that the reader in src/core is not the only one that agrees.
TEST(FormatVectors, Version2FileDecodesByTheDocumentedLayout) {
  const fs::path dir = fs::path(ENVELOPEFS_TEST_DATA_DIR) / "v2/volume";
  std::ifstream in(dir / "9suTv2rBGVB0fAkl9XK3A9cVLPzpzoP2DfRApir-J6o", std::ios::binary);
  ASSERT_TRUE(in);
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const uint64_t kChunks = 300, kSize = 299 * 4096 + 4, kStride = 4096 + 28;
  auto chunk_offset = [&](uint64_t i) { return 512 + i * kStride + i / 256 * 4096; };
  ASSERT_EQ(chunk_offset(299) + 4 + 28, file.size());
  ASSERT_EQ(0, std::memcmp(file.data(), "ENVLPFS\x01", 8));
  EXPECT_EQ(2, LoadLe16(file.data() + 8));
  EXPECT_EQ(4096u, LoadLe32(file.data() + 12));

  // The KEK comes from the vector's keyring; everything below follows envelopefs-format(5).
  auto volume = OpenCopyOf(dir);
  const uint8_t* slot = file.data() + 64;
  SecureBytes kek;
  ASSERT_TRUE(volume->FindKek(LoadLe32(slot + 8), LoadLe32(slot + 12), kek));
  std::vector<uint8_t> aad(file.begin(), file.begin() + 64);
  aad.insert(aad.begin(), kDekWrapLabel, kDekWrapLabel + 17);
  aad.insert(aad.end(), slot, slot + 16);
  SecureBytes dek(32);
  ASSERT_TRUE(ThreadAead().Open(kek.span(), std::span<const uint8_t, 12>(slot + 16, 12), aad,
                                std::span<const uint8_t>(slot + 28, 32),
                                std::span<const uint8_t, 16>(slot + 60, 16), dek.mutable_span()));
  SecureBytes state_key = DeriveKey(dek.span(), "envelopefs state v1");
  SecureBytes content_key = DeriveKey(dek.span(), "envelopefs content v1");

  // The newer state record: slot (c - 1) % 2, AAD "envelopefs state v2" || file id || c.
  const uint64_t c0 = LoadLe64(file.data() + 256), c1 = LoadLe64(file.data() + 384);
  const uint64_t c = std::max(c0, c1);
  ASSERT_EQ(1u, c0 > c1 ? c0 - c1 : c1 - c0);
  const uint8_t* record = file.data() + 256 + (c - 1) % 2 * 128;
  std::vector<uint8_t> state_aad;
  state_aad.reserve(19 + 16 + 8);
  state_aad.insert(state_aad.end(), kStateLabelV2, kStateLabelV2 + 19);
  state_aad.insert(state_aad.end(), file.begin() + 16, file.begin() + 32);
  uint8_t counter[8];
  StoreLe64(counter, c);
  state_aad.insert(state_aad.end(), counter, counter + 8);
  uint8_t state[48];
  ASSERT_TRUE(ThreadAead().Open(state_key.span(), std::span<const uint8_t, 12>(record + 8, 12),
                                state_aad, std::span<const uint8_t>(record + 20, 48),
                                std::span<const uint8_t, 16>(record + 68, 16), state));
  EXPECT_EQ(kSize, LoadLe64(state));
  EXPECT_EQ(kStateSealed | kStateSparse, LoadLe32(state + 8));

  // The index block of group 0 holds the tags of chunks 0..255; the digest covers the groups
  // that hold data, each as its number and its (zero-padded) block.
  std::vector<uint8_t> tags(512 * 16, 0);  // groups 0 and 1
  for (uint64_t i = 0; i < kChunks; ++i) {
    const uint64_t len = i == kChunks - 1 ? 4 : 4096;
    std::memcpy(tags.data() + i * 16, file.data() + chunk_offset(i) + 12 + len, 16);
  }
  EXPECT_EQ(0, std::memcmp(file.data() + chunk_offset(255) + kStride, tags.data(), 4096));
  crypto_generichash_state h;
  crypto_generichash_init(&h, nullptr, 0, 32);
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>("envelopefs index v2"), 19);
  uint8_t number[8];
  StoreLe64(number, kChunks);
  crypto_generichash_update(&h, number, 8);
  for (uint64_t g = 0; g < 2; ++g) {
    StoreLe64(number, g);
    crypto_generichash_update(&h, number, 8);
    crypto_generichash_update(&h, tags.data() + g * 4096, 4096);
  }
  uint8_t digest[32];
  crypto_generichash_final(&h, digest, 32);
  EXPECT_EQ(0, std::memcmp(state + 16, digest, 32));

  // Chunk 256 (the first of group 1, after the index block): 'G' * 4096.
  const uint8_t* chunk = file.data() + chunk_offset(256);
  auto chunk_aad = ChunkAad(ParseFixedHeader(file).file_id, 256);
  std::vector<uint8_t> plain(4096);
  ASSERT_TRUE(ThreadAead().Open(content_key.span(), std::span<const uint8_t, 12>(chunk, 12),
                                chunk_aad, std::span<const uint8_t>(chunk + 12, 4096),
                                std::span<const uint8_t, 16>(chunk + 12 + 4096, 16), plain));
  EXPECT_EQ(std::vector<uint8_t>(4096, 'G'), plain);
  // Chunk 1 is a hole: all zero on disk, its tag zero in the index.
  EXPECT_TRUE(std::all_of(file.begin() + chunk_offset(1), file.begin() + chunk_offset(2),
                          [](uint8_t b) { return b == 0; }));
}

}  // namespace
}  // namespace envelopefs
