// Unit tests of ClosedFilePlainSize and HeaderLayout (cipher_header.h): the plaintext size that
// stat shows for a closed cipher file, from its length, reading the file's own header only for
// files larger than one group of chunks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>

#include "envelopefs/cipher_header.h"
#include "envelopefs/file_format.h"
#include "envelopefs/unique_fd.h"
#include "temp_volume.h"

namespace envelopefs {
namespace {

using testing::TempVolume;

constexpr uint32_t kChunk = 4096;  // TempVolume's chunk size
constexpr uint64_t kGroup = format::kIndexGroupChunks * uint64_t{kChunk};  // one group's bytes

uint64_t CipherSizeOf(const std::filesystem::path& path) {
  struct stat st;
  EXPECT_EQ(0, stat(path.c_str(), &st)) << path;
  return static_cast<uint64_t>(st.st_size);
}

TEST(ClosedFilePlainSize, MatchesWhatWasWrittenAndReadsTheHeaderOnlyForLargeFiles) {
  TempVolume t;
  for (uint64_t size :
       {uint64_t{0}, uint64_t{1}, uint64_t{kChunk}, uint64_t{kChunk} + 1, kGroup - 1, kGroup,
        kGroup + 1, kGroup + kChunk, 300 * uint64_t{kChunk} + 7, 3 * kGroup + 5}) {
    const std::string name = "f" + std::to_string(size);
    {
      auto file = t.Create(name);
      // One byte at the end: the rest are holes, the length is the same as for dense data.
      if (size > 0) {
        ASSERT_EQ(1, TempVolume::Write(*file, "x", size - 1)) << size;
      }
      ASSERT_EQ(0, file->Sync());
    }
    int calls = 0;
    auto header_layout = [&]() -> std::optional<ChunkLayout> {
      ++calls;
      UniqueFd fd(open(t.Path(name).c_str(), O_RDONLY | O_CLOEXEC));
      return HeaderLayout(fd.get());
    };
    EXPECT_EQ(size, ClosedFilePlainSize(CipherSizeOf(t.Path(name)), kChunk, header_layout)) << size;
    // Up to one group of chunks every format version maps a length to the same size.
    EXPECT_EQ(size > kGroup ? 1 : 0, calls) << size;
    EXPECT_EQ(size, t.Open(name)->size()) << "the open file agrees";
  }
}

TEST(ClosedFilePlainSize, UsesTheLayoutOfTheFilesOwnHeader) {
  // A format-1 file (no index blocks) of 300 whole chunks: read with format 2's layout, its
  // length would mean another size.
  const ChunkLayout v1{kChunk, /*indexed=*/false};
  const uint64_t size = 300 * uint64_t{kChunk};
  const uint64_t cipher_size = v1.CipherSize(size);
  EXPECT_EQ(size, ClosedFilePlainSize(cipher_size, kChunk, [&] { return std::optional(v1); }));
  const uint64_t as_v2 = ChunkLayout{kChunk, true}.ReportedPlainSize(cipher_size);
  EXPECT_NE(size, as_v2);
  // Without the header (unreadable, or no function): the volume's layout, a lower bound.
  EXPECT_EQ(as_v2, ClosedFilePlainSize(cipher_size, kChunk, [] { return std::nullopt; }));
  EXPECT_EQ(as_v2, ClosedFilePlainSize(cipher_size, kChunk, nullptr));
}

TEST(ClosedFilePlainSize, ImpossibleLengthsShowTheWholeChunksBelowTheCut) {
  const uint64_t header = format::kHeaderSize, stride = kChunk + format::kChunkOverhead;
  EXPECT_EQ(0u, ClosedFilePlainSize(0, kChunk, nullptr));
  EXPECT_EQ(0u, ClosedFilePlainSize(header - 1, kChunk, nullptr));
  EXPECT_EQ(0u, ClosedFilePlainSize(header, kChunk, nullptr));
  // A last chunk of 1..28 bytes holds no plaintext: cut inside the second chunk's overhead.
  EXPECT_EQ(kChunk, ClosedFilePlainSize(header + stride + 5, kChunk, nullptr));
  EXPECT_EQ(kChunk + 1,
            ClosedFilePlainSize(header + stride + format::kChunkOverhead + 1, kChunk, nullptr));
}

TEST(HeaderLayout, ReadsTheChunkSizeAndVersionWithoutAKey) {
  TempVolume t;
  t.Create("f");
  UniqueFd fd(open(t.Path("f").c_str(), O_RDONLY | O_CLOEXEC));
  std::optional<ChunkLayout> layout = HeaderLayout(fd.get());
  ASSERT_TRUE(layout);
  EXPECT_EQ(kChunk, layout->chunk_size);
  EXPECT_TRUE(layout->indexed);

  std::ofstream(t.Path("plain")) << "not a cipher file";
  UniqueFd plain(open(t.Path("plain").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(HeaderLayout(plain.get()));
  std::ofstream(t.Path("empty")).flush();
  UniqueFd empty(open(t.Path("empty").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(HeaderLayout(empty.get()));
  EXPECT_FALSE(HeaderLayout(-1));
}

}  // namespace
}  // namespace envelopefs
