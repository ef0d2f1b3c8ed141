// libFuzzer target: opening and reading a whole cipher file through CipherFile (the data path:
// header, state, the chunk index of format 2, then every chunk's decryption and its check
// against the index, holes of sparse files), as the daemon reads files.
//
// Input: mode (u8), state flags (u8), split chunk (u16 LE), gap in groups (u8), read size
// (u32 LE), state size (u64 LE), state digest (32 bytes), then the file's image (a real cipher
// file of the test volume in the seeds). The chunks of the image from `split` on are moved
// `gap` groups of 256 chunks further (a sparse gap), so that small inputs reach index blocks and
// holes. So that the fuzzer gets past authentication, the mode can re-authenticate the image
// with the test volume's keys, keeping its fuzzed structure:
//   bit 0  rewrap both key slots (active KEK, a fixed DEK)
//   bit 1  seal every chunk in place: its nonce as is, its ciphertext bytes taken as plaintext
//          (an all-zero chunk is left as a hole)
//   bit 2  write the index blocks of the chunks' tags
//   bit 3  write two consecutive state records (the fuzzed flags)
//   bit 4  ... with the fuzzed size (else the one the file's length gives)
//   bit 5  ... with the fuzzed digest (else the index's)
//   bit 6  open the file for writing (an unsealed file's index is then rewritten), and after
//          the reads write a few bytes at the split, truncate to the state size and sync
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "envelopefs/chunk_index.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/crypto.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "fuzz_support.h"

using namespace envelopefs;
namespace fmt = envelopefs::format;

namespace {

constexpr uint64_t kMaxRead = 256 * 1024;  // plaintext bytes read per region of interest

const SecureBytes& FixedDek() {
  static SecureBytes dek = [] {
    SecureBytes d(kKeySize);
    std::fill(d.data(), d.data() + d.size(), 0xa5);
    return d;
  }();
  return dek;
}

struct Image {
  std::vector<uint8_t> bytes;  // the file's first part, up to the split
  std::vector<uint8_t> tail;   // the chunks from the split on
  uint64_t tail_at = 0;        // where the tail starts in the file
  uint64_t length() const { return tail.empty() ? bytes.size() : tail_at + tail.size(); }
};

void PwriteAll(int fd, std::span<const uint8_t> bytes, uint64_t offset) {
  fuzz::Check(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
                  static_cast<ssize_t>(bytes.size()),
              "write the cipher file");
}

// Reads [from, to) in reads of `step` bytes, at most kMaxReads of them (small steps over a
// long range would make one input take seconds).
void ReadRange(CipherFile& file, uint64_t from, uint64_t to, size_t step) {
  constexpr int kMaxReads = 64;
  std::vector<uint8_t> out(step);
  int reads = 0;
  for (uint64_t at = from; at < to && reads < kMaxReads; at += step, ++reads) {
    const ssize_t n = file.Read(out, at);
    fuzz::Check(n <= static_cast<ssize_t>(step), "a read returns at most what was asked");
    if (n <= 0) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const uint8_t flags = in.U8();
  const uint16_t split = in.U16();
  const uint8_t gap = in.U8() % 17;
  const size_t step = 1 + in.U32() % kMaxRead;
  const uint64_t fuzzed_size = in.U64();
  IndexDigest fuzzed_digest{};
  auto digest_bytes = in.Bytes(fuzzed_digest.size());
  std::copy(digest_bytes.begin(), digest_bytes.end(), fuzzed_digest.begin());
  std::span<const uint8_t> image_bytes = in.Rest();

  Image image;
  uint64_t far = 0;  // the plaintext offset of the first chunk after the gap
  image.bytes.assign(image_bytes.begin(), image_bytes.end());
  std::optional<FixedHeader> fixed;
  if (image.bytes.size() >= fmt::kHeaderSize) {
    try {
      fixed = ParseFixedHeader(image.bytes);
    } catch (const Error&) {
    }
  }
  if (fixed) {
    const ChunkLayout layout = ChunkLayout::Of(*fixed);
    uint8_t* header = image.bytes.data();
    Volume::KekCopy kek = fuzz::TestVolume().ActiveKek();
    if (mode & 1) {
      for (int i = 0; i < 2; ++i) {
        uint8_t* slot = header + fmt::kKeySlotOffset[i];
        KeySlotInfo info{LoadLe64(slot), kek.info.id, kek.info.version};
        KeySlotBytes wrapped =
            WrapDek(std::span<const uint8_t>(header, fmt::kFixedSize), info, FixedDek(), kek.key);
        std::memcpy(slot, wrapped.data(), wrapped.size());
      }
    }
    // The chunks of the image, and where each lands in the file.
    const uint64_t split_at = layout.ChunkOffset(split);
    const uint64_t shift =
        layout.ChunkOffset(uint64_t{gap} * fmt::kIndexGroupChunks) - layout.ChunkOffset(0);
    auto final_index = [&](uint64_t j) {
      return j < split ? j : j + uint64_t{gap} * fmt::kIndexGroupChunks;
    };
    far = final_index(split) * fixed->chunk_size;
    const FileKeys keys = FileKeys::Derive(FixedDek());
    ChunkIndex index;
    std::vector<std::pair<uint64_t, ChunkTag>> tags;
    for (uint64_t j = 0; layout.ChunkOffset(j) + fmt::kChunkOverhead < image.bytes.size(); ++j) {
      const uint64_t at = layout.ChunkOffset(j);
      const uint64_t len =
          std::min<uint64_t>(layout.stride(), image.bytes.size() - at) - fmt::kChunkOverhead;
      uint8_t* chunk = image.bytes.data() + at;
      if (IsAllZero({chunk, len + fmt::kChunkOverhead})) continue;  // a hole
      if (mode & 2) {
        auto aad = ChunkAad(fixed->file_id, final_index(j));
        std::vector<uint8_t> plain(chunk + fmt::kChunkNonceSize,
                                   chunk + fmt::kChunkNonceSize + len);
        ThreadAead().Seal(
            keys.content.span(), std::span<const uint8_t, kGcmNonceSize>(chunk, kGcmNonceSize), aad,
            plain, {chunk + fmt::kChunkNonceSize, len},
            std::span<uint8_t, kGcmTagSize>(chunk + fmt::kChunkNonceSize + len, kGcmTagSize));
      }
      ChunkTag tag;
      std::memcpy(tag.data(), chunk + fmt::kChunkNonceSize + len, tag.size());
      tags.emplace_back(final_index(j), tag);
    }
    if (split_at < image.bytes.size() && gap > 0) {
      image.tail.assign(image.bytes.begin() + static_cast<ptrdiff_t>(split_at), image.bytes.end());
      image.bytes.resize(split_at);
      image.tail_at = split_at + shift;
    }
    const uint64_t length = image.length();
    const uint64_t plain_size =
        (mode & 16) ? fuzzed_size : layout.ReportedPlainSize(std::max<uint64_t>(length, 512));
    const uint64_t count = layout.ChunkCount(plain_size);
    index.Resize(count);
    for (const auto& [i, tag] : tags) {
      if (i < count) index.Set(i, tag);
    }
    if (mode & 8) {
      const uint16_t version = fixed->version;
      FileState older{static_cast<uint64_t>(1 + (flags >> 4)), plain_size, 0, {}};
      FileState newer{older.counter + 1, plain_size, flags & 0x0fu, fuzzed_digest};
      if ((mode & 32) == 0) newer.digest = index.Digest();
      older.digest = newer.digest;
      for (const FileState& s : {older, newer}) {
        StateSlotBytes sealed = SealState(version, keys.state, fixed->file_id, s);
        std::memcpy(header + StateSlotOffset(version, StateSlotFor(s.counter)), sealed.data(),
                    StateSlotSize(version));
      }
    }
    UniqueFd dir = fuzz::FreshDir("chunks");
    UniqueFd out(::openat(dir.get(), "file", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    PwriteAll(out.get(), image.bytes, 0);
    if (!image.tail.empty()) PwriteAll(out.get(), image.tail, image.tail_at);
    if (mode & 4) {
      std::vector<uint8_t> block(fmt::kIndexBlockSize);
      const uint64_t groups = layout.IndexBlockCount(count);
      index.ForEachDataGroup(0, groups, [&](uint64_t g) {
        const uint64_t at = layout.IndexBlockOffset(g);
        if (at >= length) return;
        index.CopyBlock(g, block.data());
        PwriteAll(
            out.get(),
            std::span<const uint8_t>(block).first(std::min<uint64_t>(block.size(), length - at)),
            at);
      });
    }
  } else {
    UniqueFd dir = fuzz::FreshDir("chunks");
    fuzz::WriteFileAt(dir.get(), "file", image.bytes);
  }

  const std::string path = (fuzz::ScratchRoot() / "chunks" / "file").string();
  std::shared_ptr<CipherFile> file;
  static LoggingDamageReporter reporter;  // through the (silenced) log
  try {
    const int access = (mode & 64) ? O_RDWR : O_RDONLY;
    file = CipherFile::Open(UniqueFd(::open(path.c_str(), access | O_CLOEXEC)), fuzz::TestVolume(),
                            "fuzz", reporter);
  } catch (const Error& e) {
    fuzz::Note(e.what());
    return 0;
  }
  const uint64_t plain = file->size();
  ReadRange(*file, 0, std::min(plain, kMaxRead), step);
  if (far < plain) ReadRange(*file, far, std::min(plain, far + kMaxRead), step);
  if (plain > kMaxRead) ReadRange(*file, plain - std::min(plain, kMaxRead), plain, step);
  std::vector<uint8_t> past(16);
  fuzz::Check(file->Read(past, plain) == 0, "a read at the end returns 0");
  if (mode & 64) {
    const uint8_t bytes[] = {'f', 'u', 'z', 'z'};
    const uint64_t at = std::min<uint64_t>(far, plain + 4096);
    if (file->Write(bytes, at) == sizeof bytes) {
      std::vector<uint8_t> back(sizeof bytes);
      fuzz::Check(file->Read(back, at) == sizeof bytes && std::ranges::equal(back, bytes),
                  "what was written reads back");
    }
    file->Truncate(std::min<uint64_t>(fuzzed_size, plain + (uint64_t{1} << 20)));
    file->Sync();
  }
  return 0;
}
