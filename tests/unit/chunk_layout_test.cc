// Unit tests of ChunkLayout's range splitting: pure offset math, checked against a brute-force
// model byte by byte, in both format versions (v2 has index blocks between groups of chunks).
#include <gtest/gtest.h>

#include "envelopefs/file_header.h"

namespace envelopefs {
namespace {

using format::kChunkOverhead;
using format::kHeaderSize;

TEST(ChunkLayout, ASmallRangeInsideOneChunk) {
  const ChunkLayout layout{4096, true};
  const ChunkLayout::Span span = layout.SpanOf(5000, 5010, 10000);
  EXPECT_EQ(1u, span.first);
  EXPECT_EQ(1u, span.last);
  EXPECT_EQ(kHeaderSize + layout.stride(), span.cipher_lo);
  EXPECT_EQ(kHeaderSize + 2 * layout.stride(), span.cipher_hi);
  const ChunkLayout::Part part = layout.PartOf(1, 5000, 5010, 10000);
  EXPECT_EQ(4096u, part.length);
  EXPECT_EQ(904u, part.from);
  EXPECT_EQ(914u, part.to);
  EXPECT_EQ(0u, part.at);
  EXPECT_FALSE(part.whole());
}

TEST(ChunkLayout, TheLastChunkIsShortAndTheSpanEndsWithIt) {
  const ChunkLayout layout{4096, false};
  const ChunkLayout::Span span = layout.SpanOf(0, 10000, 10000);
  EXPECT_EQ(0u, span.first);
  EXPECT_EQ(2u, span.last);
  EXPECT_EQ(layout.CipherSize(10000), span.cipher_hi);
  EXPECT_TRUE(layout.PartOf(0, 0, 10000, 10000).whole());
  const ChunkLayout::Part tail = layout.PartOf(2, 0, 10000, 10000);
  EXPECT_EQ(10000u - 8192u, tail.length);
  EXPECT_TRUE(tail.whole());
  EXPECT_EQ(8192u, tail.at);
}

TEST(ChunkLayout, ASpanAcrossAGroupIncludesTheIndexBlock) {
  const ChunkLayout layout{4096, true};
  const uint64_t group = format::kIndexGroupChunks * 4096ull;  // plaintext bytes of a group
  const ChunkLayout::Span span = layout.SpanOf(group - 10, group + 10, group * 2);
  EXPECT_EQ(format::kIndexGroupChunks - 1, span.first);
  EXPECT_EQ(format::kIndexGroupChunks, span.last);
  EXPECT_EQ(2 * layout.stride() + format::kIndexBlockSize, span.cipher_len());
}

// Every byte of every range lands exactly once, in order, at the right place of its chunk.
TEST(ChunkLayout, PartsCoverEveryRangeExactlyOnce) {
  for (bool indexed : {false, true}) {
    const ChunkLayout layout{4096, indexed};
    const uint64_t size = 3 * 4096 + 100;
    for (uint64_t offset = 0; offset < size; offset += 509) {
      for (uint64_t end = offset + 1; end <= size; end += 1237) {
        const ChunkLayout::Span span = layout.SpanOf(offset, end, size);
        uint64_t next = 0;  // the next byte of the range expected
        for (uint64_t i = span.first; i <= span.last; ++i) {
          const ChunkLayout::Part p = layout.PartOf(i, offset, end, size);
          ASSERT_EQ(next, p.at) << offset << ".." << end << " chunk " << i;
          ASSERT_EQ(offset + p.at, i * 4096 + p.from);
          ASSERT_LT(p.from, p.to);
          ASSERT_LE(p.to, p.length);
          next += p.to - p.from;
        }
        ASSERT_EQ(end - offset, next);
        ASSERT_LE(span.cipher_hi, layout.CipherSize(size));
        ASSERT_EQ(layout.ChunkOffset(span.first), span.cipher_lo);
        ASSERT_EQ(
            layout.ChunkOffset(span.last) + layout.ChunkLength(span.last, size) + kChunkOverhead,
            span.cipher_hi);
      }
    }
  }
}

}  // namespace
}  // namespace envelopefs
