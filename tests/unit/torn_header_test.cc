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

FileState Numbered(FileState s, uint64_t counter) {
  s.counter = counter;
  return s;
}

// Between two flushes, writes go to ascending offsets: a device that tears a sector by address
// then leaves a prefix of the plan, as a crash between writes does.
void ExpectAscendingBetweenFlushes(const std::vector<HeaderWrite>& writes) {
  size_t end = 0;
  for (const HeaderWrite& w : writes) {
    EXPECT_LE(end, w.offset);
    end = w.flush_after ? 0 : w.offset + w.bytes.size();
  }
}

TEST(TornHeader, StateWritesFromAnEvenRecord) {
  for (bool sealed : {false, true}) {
    // Both slots hold the same state (how every state is written now).
    FileState old_state = Sealed(6, 9000, 1);
    Fixture f({Numbered(old_state, 5), old_state});
    FileState next = sealed ? Sealed(0, 12000, 2) : FileState{0, 9000, 0, {}}, written;
    auto writes = PlanStateWrites(kFormatVersion2, f.keys.state, f.id, old_state, next, &written);
    ASSERT_EQ(1u, writes.size());  // one 256-byte write, slot 0 first
    EXPECT_EQ(8u, written.counter);
    ExpectAscendingBetweenFlushes(writes);
    ExpectEveryPrefixOpens(f.header, writes, {&f.dek, Numbered(old_state, 5), 6},
                           {&f.dek, Numbered(written, 7), 8});
    OpenedHeader done = OpenImage(ApplyPrefix(f.header, writes, TotalBytes(writes)));
    EXPECT_EQ(8u, done.state.counter);
    EXPECT_TRUE(done.note.empty()) << done.note;
  }
}

TEST(TornHeader, StateWritesFromAnOddRecordOfAnOlderVersion) {
  // envelopefs 0.2 wrote an unsealed record alone: record 7 (slot 0) beside sealed record 6,
  // which holds another state. Record 8 goes over 6 and is flushed before slot 0 is touched.
  FileState unsealed{7, 20000, 0, {}};
  Fixture f({Sealed(6, 9000, 1), unsealed});
  FileState written;
  auto writes =
      PlanStateWrites(kFormatVersion2, f.keys.state, f.id, unsealed, Sealed(0, 20000, 3), &written);
  ASSERT_EQ(2u, writes.size());
  EXPECT_TRUE(writes[0].flush_after);
  EXPECT_EQ(StateSlotOffset(kFormatVersion2, 1), writes[0].offset);
  EXPECT_EQ(10u, written.counter);  // even again: from now on one write
  ExpectAscendingBetweenFlushes(writes);
  ExpectEveryPrefixOpens(f.header, writes, {&f.dek, unsealed}, {&f.dek, Numbered(written, 8), 10});
}

TEST(TornHeader, ATruncationToZeroWithAFreshDataKey) {
  for (int first_key_slot : {0, 1}) {
    FileState old_state{6, 9000, 0, {}};
    Fixture f({Numbered(old_state, 5), old_state});
    SecureBytes fresh_dek = Pattern(0x80);
    HeaderBytes fresh = BuildHeader(4096, f.id, fresh_dek, 7, 1, Pattern(0x10), 4);
    auto writes = PlanRekeyWrites(ParseFixedHeader(fresh), fresh, first_key_slot);
    ASSERT_EQ(3u, writes.size());
    EXPECT_EQ(kKeySlotOffset[first_key_slot], writes[0].offset);
    ExpectAscendingBetweenFlushes(writes);
    ExpectEveryPrefixOpens(f.header, writes, {&f.dek, Numbered(old_state, 5), 6},
                           {&fresh_dek, EmptyFileState(1), 2});
    OpenedHeader done = OpenImage(ApplyPrefix(f.header, writes, TotalBytes(writes)));
    ASSERT_TRUE(done.ok) << done.problem;
    EXPECT_EQ(2u, done.state.counter);
    EXPECT_TRUE(done.slot_opens[0] && done.slot_opens[1]);
    EXPECT_TRUE(done.note.empty()) << done.note;
  }
}

TEST(TornHeader, ATruncationToZeroWritesFirstTheKeySlotThatDoesNotOpen) {
  // Key slot 1 is damaged (a torn rewrap, or tampering): slot 0 holds the only copy of the DEK
  // in use, so the fresh DEK goes to slot 1 first.
  FileState old_state{6, 9000, 0, {}};
  Fixture f({Numbered(old_state, 5), old_state});
  f.header[kKeySlotOffset[1] + 40] ^= 1;
  OpenedHeader before = OpenImage(f.header);
  ASSERT_TRUE(before.ok);
  EXPECT_FALSE(before.slot_opens[1]);
  EXPECT_NE(std::string::npos, before.note.find("key slot 1 does not authenticate")) << before.note;
  SecureBytes fresh_dek = Pattern(0x80);
  HeaderBytes fresh = BuildHeader(4096, f.id, fresh_dek, 7, 1, Pattern(0x10), 4);
  auto writes = PlanRekeyWrites(ParseFixedHeader(fresh), fresh, /*first_key_slot=*/1);
  ExpectEveryPrefixOpens(f.header, writes, {&f.dek, Numbered(old_state, 5), 6},
                         {&fresh_dek, EmptyFileState(1), 2});
}

TEST(TornHeader, KeySlotsWithTwoDataKeysAreFlagged) {
  FileState old_state{6, 9000, 0, {}};
  Fixture f({Numbered(old_state, 5), old_state});
  HeaderBytes fresh = BuildHeader(4096, f.id, Pattern(0x80), 7, 1, Pattern(0x10), 4);
  std::memcpy(f.header.data() + kKeySlotOffset[0], fresh.data() + kKeySlotOffset[0], kKeySlotSize);
  OpenedHeader opened = OpenImage(f.header);
  ASSERT_TRUE(opened.ok) << opened.problem;
  EXPECT_TRUE(SameKey(opened.dek, f.dek));  // the DEK the state records are under
  EXPECT_TRUE(opened.slots_disagree);
  EXPECT_FALSE(opened.slot_opens[0]);
  EXPECT_NE(std::string::npos, opened.note.find("another data key")) << opened.note;
}

TEST(TornHeader, ATruncationToZeroThatChangesTheVersionIsOneWrite) {
  FixedHeader v1;
  v1.version = kFormatVersion1;
  v1.cipher = kCipherAes256Gcm;
  v1.chunk_size = 4096;
  HeaderBytes fresh = BuildHeader(4096, v1.file_id, Pattern(0x80), 7, 1, Pattern(0x10), 2);
  auto writes = PlanRekeyWrites(v1, fresh, 0);
  ASSERT_EQ(1u, writes.size());
  EXPECT_EQ(0u, writes[0].offset);
  EXPECT_EQ(kHeaderSize, writes[0].bytes.size());
}

TEST(TornHeader, ARewrapOfBothKeySlots) {
  FileState sealed = Sealed(6, 9000, 1);
  Fixture f({Numbered(sealed, 5), sealed});
  // Rewrap to KEK version 2: slot 0, flushed, then slot 1, each with the next generation.
  std::span<const uint8_t> fixed(f.header.data(), kFixedSize);
  std::vector<HeaderWrite> writes;
  for (int slot : {0, 1}) {
    KeySlotBytes bytes = WrapDek(fixed, KeySlotInfo{4, 7, 2}, f.dek, Pattern(0x20));
    writes.push_back(
        {kKeySlotOffset[slot], std::vector<uint8_t>(bytes.begin(), bytes.end()), slot == 0});
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
