// Torn header writes: every prefix of every in-place header rewrite (a new state record, a
// sealed pair, a truncation to zero with a fresh data key, a rewrap) leaves a header that opens
// as the one before or the one after the rewrite (header_writes.h, envelopefs-format(5)).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "envelopefs/cipher_header.h"
#include "envelopefs/header_writes.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

using namespace format;

SecureBytes Pattern(uint8_t start) {
  SecureBytes out(kKeySize);
  for (size_t i = 0; i < kKeySize; ++i) out.data()[i] = static_cast<uint8_t>(start + i);
  return out;
}

bool SameKey(const SecureBytes& a, const SecureBytes& b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

// KEK versions 1 and 2 of KEK id 7.
class TwoKeks : public KekSource {
 public:
  bool FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const override {
    if (id != 7 || (version != 1 && version != 2)) return false;
    key_out = Pattern(static_cast<uint8_t>(version * 0x10));
    return true;
  }
};

// Opens `image` (a header, plus `data_bytes` of chunks behind it) as a file would be opened.
OpenedHeader OpenImage(const std::vector<uint8_t>& image, size_t data_bytes = 0) {
  char path[] = "/tmp/envelopefs-torn-XXXXXX";
  UniqueFd fd(mkstemp(path));
  unlink(path);
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(static_cast<ssize_t>(image.size()), pwrite(fd.get(), image.data(), image.size(), 0));
  if (data_bytes) {
    EXPECT_EQ(0, ftruncate(fd.get(), static_cast<off_t>(image.size() + data_bytes)));
  }
  return OpenHeader(ReadHeader(fd.get()), TwoKeks(), /*check_length=*/false);
}

// A header's data key and state; a state written as a pair of records may show as either.
struct Versions {
  const SecureBytes* dek;
  FileState state;
  uint64_t last_counter = 0;  // 0: state.counter
};

// Every prefix of `writes` applied to `before` opens as `old_one` or `new_one` (same DEK and
// record), and both occur.
void ExpectEveryPrefixOpens(const std::vector<uint8_t>& before,
                            const std::vector<HeaderWrite>& writes, const Versions& old_one,
                            const Versions& new_one) {
  int olds = 0, news = 0;
  for (size_t k = 0; k <= TotalBytes(writes); ++k) {
    OpenedHeader opened = OpenImage(ApplyPrefix(before, writes, k));
    if (!opened.ok) {
      ADD_FAILURE() << "torn after " << k << " bytes: " << opened.problem;
      continue;
    }
    auto is = [&](const Versions& v) {
      const uint64_t last = v.last_counter ? v.last_counter : v.state.counter;
      return SameKey(opened.dek, *v.dek) && opened.state.counter >= v.state.counter &&
             opened.state.counter <= last && opened.state.size == v.state.size &&
             opened.state.flags == v.state.flags && opened.state.digest == v.state.digest;
    };
    if (is(old_one)) {
      ++olds;
    } else if (is(new_one)) {
      ++news;
    } else {
      ADD_FAILURE() << "torn after " << k << " bytes: record " << opened.state.counter
                    << " is neither the old nor the new state";
    }
    // A tear inside a record is reported, never silent.
    if (k == 0) {
      EXPECT_TRUE(opened.note.empty()) << k << ": " << opened.note;
    }
  }
  EXPECT_GT(olds, 0);
  EXPECT_GT(news, 0);
}

struct Fixture {
  FileId id{};
  SecureBytes dek = Pattern(0x40);
  FileKeys keys = FileKeys::Derive(dek);
  std::vector<uint8_t> header;

  // A format-2 header under KEK 7 v1 whose state slots hold `records`.
  explicit Fixture(std::initializer_list<FileState> records) {
    for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(0xA0 + i);
    HeaderBytes h = BuildHeader(4096, id, dek, 7, 1, Pattern(0x10), 3);
    std::memset(h.data() + kStateRegionOffset, 0, 2 * kStateSlotSizeV2);
    for (const FileState& r : records) {
      StateSlotBytes bytes = SealState(kFormatVersion2, keys.state, id, r);
      std::memcpy(h.data() + StateSlotOffset(kFormatVersion2, StateSlotFor(r.counter)),
                  bytes.data(), kStateSlotSizeV2);
    }
    header.assign(h.begin(), h.end());
  }
};

FileState Sealed(uint64_t counter, uint64_t size, uint8_t digest_byte) {
  FileState s{counter, size, kStateSealed, {}};
  s.digest.fill(digest_byte);
  return s;
}

TEST(TornHeader, AnUnsealedRecordAfterASealedPair) {
  for (uint64_t c : {4u, 5u}) {  // the new record in either slot
    Fixture f({Sealed(c - 1, 9000, 1), Sealed(c, 9000, 1)});
    FileState next{0, 9000, 0, {}}, written;
    auto writes = PlanStateWrites(kFormatVersion2, f.keys.state, f.id, Sealed(c, 9000, 1), next,
                                  /*pair=*/false, &written);
    EXPECT_EQ(c + 1, written.counter);
    ExpectEveryPrefixOpens(f.header, writes, {&f.dek, Sealed(c, 9000, 1)}, {&f.dek, written});
  }
}

TEST(TornHeader, ASealedPairAfterAnUnsealedRecord) {
  for (uint64_t c : {4u, 5u}) {  // the pair starting in either slot
    FileState unsealed{c, 9000, 0, {}};
    Fixture f({Sealed(c - 1, 9000, 1), unsealed});
    FileState written;
    auto writes = PlanStateWrites(kFormatVersion2, f.keys.state, f.id, unsealed,
                                  Sealed(0, 12000, 2), /*pair=*/true, &written);
    EXPECT_EQ(c + 2, written.counter);
    // A tear inside the second record leaves the first one of the pair: the same new state.
    FileState first = written;
    first.counter = c + 1;
    ExpectEveryPrefixOpens(f.header, writes, {&f.dek, unsealed}, {&f.dek, first, c + 2});
    // Once the second record is whole, it is the state, and nothing is reported.
    OpenedHeader done = OpenImage(ApplyPrefix(f.header, writes, TotalBytes(writes)));
    EXPECT_EQ(c + 2, done.state.counter);
    EXPECT_TRUE(done.note.empty()) << done.note;
  }
}

TEST(TornHeader, ATruncationToZeroWithAFreshDataKey) {
  for (uint64_t c : {4u, 5u}) {
    FileState unsealed{c, 9000, 0, {}};
    Fixture f({Sealed(c - 1, 9000, 1), unsealed});
    SecureBytes fresh_dek = Pattern(0x80);
    HeaderBytes fresh = BuildHeader(4096, f.id, fresh_dek, 7, 1, Pattern(0x10), 4);
    FileKeys fresh_keys = FileKeys::Derive(fresh_dek);
    FileState written;
    auto writes =
        PlanRekeyWrites(ParseFixedHeader(fresh), fresh, fresh_keys.state, unsealed, &written);
    ASSERT_EQ(4u, writes.size());
    EXPECT_EQ(c + 2, written.counter);
    FileState first_new = EmptyFileState(c + 1);
    ExpectEveryPrefixOpens(f.header, writes, {&f.dek, unsealed}, {&fresh_dek, first_new, c + 2});
    // Once the last state record is whole, it is the state.
    OpenedHeader done = OpenImage(ApplyPrefix(f.header, writes, TotalBytes(writes)));
    ASSERT_TRUE(done.ok) << done.problem;
    EXPECT_EQ(c + 2, done.state.counter);
    EXPECT_TRUE(done.slot_opens[0] && done.slot_opens[1]);
    EXPECT_TRUE(done.note.empty()) << done.note;
  }
}

TEST(TornHeader, ATruncationToZeroThatChangesTheVersionIsOneWrite) {
  FixedHeader v1;
  v1.version = kFormatVersion1;
  v1.cipher = kCipherAes256Gcm;
  v1.chunk_size = 4096;
  HeaderBytes fresh = BuildHeader(4096, v1.file_id, Pattern(0x80), 7, 1, Pattern(0x10), 2);
  FileState written;
  auto writes = PlanRekeyWrites(v1, fresh, FileKeys::Derive(Pattern(0x80)).state,
                                FileState{3, 0, 0, {}}, &written);
  ASSERT_EQ(1u, writes.size());
  EXPECT_EQ(0u, writes[0].offset);
  EXPECT_EQ(kHeaderSize, writes[0].bytes.size());
  EXPECT_EQ(2u, written.counter);
}

TEST(TornHeader, ARewrapOfBothKeySlots) {
  FileState sealed = Sealed(6, 9000, 1);
  Fixture f({Sealed(5, 9000, 1), sealed});
  // Rewrap to KEK version 2: slot 0, flushed, then slot 1, each with the next generation.
  std::span<const uint8_t> fixed(f.header.data(), kFixedSize);
  std::vector<HeaderWrite> writes;
  for (int slot : {0, 1}) {
    KeySlotBytes bytes = WrapDek(fixed, KeySlotInfo{4, 7, 2}, f.dek, Pattern(0x20));
    writes.push_back({kKeySlotOffset[slot], std::vector<uint8_t>(bytes.begin(), bytes.end())});
  }
  for (size_t k = 0; k <= TotalBytes(writes); ++k) {
    OpenedHeader opened = OpenImage(ApplyPrefix(f.header, writes, k));
    ASSERT_TRUE(opened.ok) << "torn after " << k << " bytes: " << opened.problem;
    EXPECT_TRUE(SameKey(opened.dek, f.dek));
    EXPECT_EQ(6u, opened.state.counter);
  }
}

TEST(TornHeader, TamperingWithOneSlotGainsNothing) {
  // While a file is being changed, the older slot holds the last sealed state; damaging the
  // newer (unsealed) record makes that sealed state the file's, whose length the changed file
  // no longer has: the open fails on the length (and, for chunks, on the index digest).
  FileState unsealed{7, 20000, 0, {}};
  Fixture f({Sealed(6, 9000, 1), unsealed});
  f.header[StateSlotOffset(kFormatVersion2, StateSlotFor(7)) + 40] ^= 1;
  OpenedHeader opened = OpenImage(f.header);
  ASSERT_TRUE(opened.ok) << opened.problem;
  EXPECT_EQ(6u, opened.state.counter);
  EXPECT_FALSE(opened.note.empty());
  char path[] = "/tmp/envelopefs-torn-XXXXXX";
  UniqueFd fd(mkstemp(path));
  unlink(path);
  ASSERT_EQ(static_cast<ssize_t>(f.header.size()),
            pwrite(fd.get(), f.header.data(), f.header.size(), 0));
  ASSERT_EQ(0, ftruncate(fd.get(), kHeaderSize + 5 * (4096 + kChunkOverhead)));  // 20,480 bytes
  HeaderRead read = ReadHeader(fd.get());
  OpenedHeader checked = OpenHeader(read, TwoKeks(), /*check_length=*/true);
  EXPECT_FALSE(checked.ok);
  EXPECT_NE(std::string::npos, checked.problem.find("sealed size")) << checked.problem;
}

}  // namespace
}  // namespace envelopefs
