// CipherFile, the data path: chunks read, decrypted and authenticated; written (merged with
// their old contents where written in part); files grown, truncated and re-keyed. The byte
// layout is in file_format.h; see cipher_file.h.
#include "envelopefs/cipher_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "cipher_file_internal.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/error_mapping.h"
#include "envelopefs/header_writes.h"
#include "envelopefs/log.h"
#include "envelopefs/volume.h"
#include "header_lock.h"
#include "kept_times.h"

namespace envelopefs {
namespace {

using namespace format;

// The tag stored with a chunk of `plain_len` bytes at `cipher`.
ChunkTag StoredTag(const uint8_t* cipher, uint64_t plain_len) {
  ChunkTag tag;
  std::memcpy(tag.data(), cipher + kChunkNonceSize + plain_len, kChunkTagSize);
  return tag;
}

}  // namespace

int CipherFile::PreadAll(uint8_t* data, size_t len, uint64_t offset) const {
  while (len > 0) {
    ssize_t n = ::pread(fd_.get(), data, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;  // the cipher file is shorter than its chunks: damaged
    data += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

int CipherFile::PwriteAll(const uint8_t* data, size_t len, uint64_t offset) const {
  while (len > 0) {
    ssize_t n = ::pwrite(fd_.get(), data, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    data += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

const char* CipherFile::ChunkProblem(uint64_t index, uint64_t plain_len, const uint8_t* cipher,
                                     uint8_t* plain) const {
  const bool full = plain_len == fixed_.chunk_size;
  const bool zero =
      IsAllZero({cipher, kChunkNonceSize}) && IsAllZero({cipher, plain_len + kChunkOverhead});
  // A hole reads as zeros: a whole all-zero chunk of a file marked sparse (a random nonce is
  // all-zero with probability 2^-96) that, in format 2, the index records as a hole.
  const ChunkTag* expected = indexed() ? &tags_.Get(index) : nullptr;
  const bool hole_expected = expected == nullptr || IsZeroTag(*expected);
  if (zero && full && disk_state_.sparse() && hole_expected) {
    std::memset(plain, 0, plain_len);
    return nullptr;
  }
  if (zero) {
    return full ? "all-zero chunk in a file without holes"
                : "all-zero last chunk (a last chunk is never a hole)";
  }
  if (indexed() && hole_expected) return "data where the index records a hole";
  if (expected != nullptr &&
      std::memcmp(expected->data(), cipher + kChunkNonceSize + plain_len, kChunkTagSize) != 0) {
    return "not the version last written (an older or foreign copy of the chunk)";
  }
  auto aad = ChunkAad(fixed_.file_id, index);
  bool ok = ThreadAead().Open(
      keys_.content.span(), std::span<const uint8_t, kGcmNonceSize>(cipher, kGcmNonceSize), aad,
      std::span<const uint8_t>(cipher + kChunkNonceSize, plain_len),
      std::span<const uint8_t, kGcmTagSize>(cipher + kChunkNonceSize + plain_len, kGcmTagSize),
      std::span<uint8_t>(plain, plain_len));
  return ok ? nullptr : "authentication failed";
}

int CipherFile::ReadChunk(uint64_t index, uint64_t plain_len, const uint8_t* cipher,
                          uint8_t* plain) const {
  const char* problem = ChunkProblem(index, plain_len, cipher, plain);
  if (problem == nullptr) return 0;
  ReportChunkDamage(index, problem);
  return -EIO;
}

void CipherFile::SealChunk(uint64_t index, const uint8_t* plain, uint64_t plain_len,
                           uint8_t* cipher) {
  GcmNonce nonce = RandomNonce();  // fresh on every write: never reused under this file's key
  std::memcpy(cipher, nonce.data(), nonce.size());
  auto aad = ChunkAad(fixed_.file_id, index);
  ThreadAead().Seal(
      keys_.content.span(), nonce, aad, std::span<const uint8_t>(plain, plain_len),
      std::span<uint8_t>(cipher + kChunkNonceSize, plain_len),
      std::span<uint8_t, kGcmTagSize>(cipher + kChunkNonceSize + plain_len, kGcmTagSize));
  if (indexed()) tags_.Set(index, StoredTag(cipher, plain_len));
}

int CipherFile::ReadOldChunk(uint64_t index, uint64_t old_len, uint8_t* plain) {
  uint8_t* old = Scratch(CipherScratch(), layout_.stride());
  if (int rc = PreadAll(old, old_len + kChunkOverhead, layout_.ChunkOffset(index)); rc < 0) {
    return rc;
  }
  return ReadChunk(index, old_len, old, plain);
}

ssize_t CipherFile::Read(std::span<uint8_t> out, uint64_t offset) {
  std::shared_lock lock(mu_);
  if (offset >= size_ || out.empty()) return 0;
  const uint64_t end = std::min<uint64_t>(offset + out.size(), size_);
  const ChunkLayout::Span span = layout_.SpanOf(offset, end, size_);
  uint8_t* cipher = Scratch(CipherScratch(), span.cipher_len());
  if (int rc = PreadAll(cipher, span.cipher_len(), span.cipher_lo); rc < 0) {
    if (rc == -EIO) ReportChunkDamage(span.last, "cipher file is shorter than its size implies");
    return rc;
  }
  for (uint64_t i = span.first; i <= span.last; ++i) {
    const ChunkLayout::Part part = layout_.PartOf(i, offset, end, size_);
    const uint8_t* src = cipher + (layout_.ChunkOffset(i) - span.cipher_lo);
    if (part.whole()) {
      if (int rc = ReadChunk(i, part.length, src, out.data() + part.at); rc < 0) return rc;
    } else {
      uint8_t* plain = Scratch(PlainScratch(), fixed_.chunk_size);
      if (int rc = ReadChunk(i, part.length, src, plain); rc < 0) return rc;
      std::memcpy(out.data() + part.at, plain + part.from, part.to - part.from);
    }
  }
  PrefetchIfSequential(offset, end, span.cipher_len());
  return static_cast<ssize_t>(end - offset);
}

void CipherFile::PrefetchIfSequential(uint64_t offset, uint64_t end, uint64_t cipher_len) const {
  // A sequential reader: ask the kernel to start reading the next stretch of the cipher file
  // now, so the disk works while this request is decrypted and sent (cold-cache throughput).
  if (last_read_end_.exchange(end) != offset || end >= size_) return;
  const uint64_t next = layout_.ChunkOffset((end - 1) / fixed_.chunk_size + 1);
  ::posix_fadvise(fd_.get(), static_cast<off_t>(next), static_cast<off_t>(2 * cipher_len),
                  POSIX_FADV_WILLNEED);
}

int CipherFile::WriteChunk(uint64_t index, const uint8_t* plain, uint64_t len) {
  uint8_t* cipher = Scratch(CipherScratch(), layout_.stride());
  SealChunk(index, plain, len, cipher);
  return PwriteAll(cipher, len + kChunkOverhead, layout_.ChunkOffset(index));
}

int CipherFile::ExtendTo(uint64_t new_size) {
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t old_size = size_;
  const uint64_t old_rem = size_ % chunk;
  const uint64_t last = size_ / chunk;
  const uint64_t rounded_old = old_rem ? (last + 1) * chunk : size_;
  const uint64_t new_rem = new_size % chunk;
  const bool creates_holes = new_size - new_rem > rounded_old;
  // The old partial last chunk is read before anything changes, and kept to be put back should
  // a later step fail.
  uint8_t* old_last = Scratch(PlainScratch(), chunk);
  if (old_rem != 0) {
    if (int rc = ReadOldChunk(last, old_rem, old_last); rc < 0) return rc;
  }
  if (int rc = PrepareModify(/*changes_size=*/true, creates_holes); rc < 0) return rc;
  const uint64_t old_count = layout_.ChunkCount(size_);
  if (indexed()) tags_.Resize(layout_.ChunkCount(new_size));
  int rc = 0;
  if (old_rem != 0) {
    // The old partial last chunk grows (zero-padded), within itself or to a full chunk.
    const uint64_t grown = std::min(new_size, (last + 1) * chunk) - last * chunk;
    std::memset(old_last + old_rem, 0, grown - old_rem);
    rc = WriteChunk(last, old_last, grown);
  }
  if (rc == 0) {
    if (new_rem != 0 && new_size > rounded_old) {
      // A new partial last chunk (encrypted zeros); full chunks before it are holes.
      uint8_t* zeros = Scratch(OutputScratch(), new_rem);
      std::memset(zeros, 0, new_rem);
      rc = WriteChunk(new_size / chunk, zeros, new_rem);
    } else if (::ftruncate(fd_.get(), static_cast<off_t>(layout_.CipherSize(new_size))) != 0) {
      rc = -errno;
    }
  }
  if (rc < 0) {
    size_ = old_size;
    std::optional<ChunkToRestore> restore;
    if (old_rem != 0) restore = ChunkToRestore{last, old_last, old_rem};
    RecoverFromFailedChange(last, new_size / chunk, restore);
    return rc;
  }
  size_ = new_size;
  return indexed() ? WriteIndex(1, 0, old_count, 0, 0) : 0;
}

ssize_t CipherFile::Append(std::span<const uint8_t> in) {
  std::unique_lock lock(mu_);
  return WriteLocked(in, size_);
}

ssize_t CipherFile::Write(std::span<const uint8_t> in, uint64_t offset) {
  std::unique_lock lock(mu_);
  return WriteLocked(in, offset);
}

ssize_t CipherFile::WriteLocked(std::span<const uint8_t> in, uint64_t offset) {
  if (in.empty()) return 0;
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t max_size =
      (static_cast<uint64_t>(std::numeric_limits<off_t>::max()) - kHeaderSize) /
      (layout_.stride() + kIndexBlockSize / kIndexGroupChunks) * chunk;
  if (offset > max_size || in.size() > max_size - offset) return -EFBIG;
  const uint64_t end = offset + in.size();
  modifications_.fetch_add(1);
  dirty_ = true;
  const uint64_t aligned_start = offset / chunk * chunk;
  if (aligned_start > size_) {
    if (int rc = ExtendTo(aligned_start); rc < 0) return rc;
  }
  const uint64_t new_size = std::max(size_, end);
  if (int rc = PrepareModify(new_size != size_, false); rc < 0) return rc;
  const ChunkLayout::Span span = layout_.SpanOf(offset, end, new_size);
  const uint64_t first = span.first, last = span.last, lo = span.cipher_lo, hi = span.cipher_hi;
  // Chunks written in part (only the first and the last can be) are merged with their old
  // contents before anything changes, so that a damaged one fails the write cleanly.
  uint8_t* merged = Scratch(PlainScratch(), 2 * chunk);
  auto merged_chunk = [&](uint64_t i) { return merged + (i == first ? 0 : chunk); };
  for (uint64_t i = first; i <= last; i = (i == first && last > first) ? last : last + 1) {
    const ChunkLayout::Part part = layout_.PartOf(i, offset, end, new_size);
    if (part.whole()) continue;
    const uint64_t old_len = layout_.ChunkLength(i, size_);
    uint8_t* plain = merged_chunk(i);
    if (old_len > 0) {
      if (int rc = ReadOldChunk(i, old_len, plain); rc < 0) return rc;
    }
    if (part.length > old_len) std::memset(plain + old_len, 0, part.length - old_len);
    std::memcpy(plain + part.from, in.data() + part.at, part.to - part.from);
  }
  const uint64_t old_count = layout_.ChunkCount(size_);
  if (indexed()) tags_.Resize(layout_.ChunkCount(new_size));
  uint8_t* out = Scratch(OutputScratch(), hi - lo);
  for (uint64_t i = first; i <= last; ++i) {
    const ChunkLayout::Part part = layout_.PartOf(i, offset, end, new_size);
    const uint8_t* src = part.whole() ? in.data() + part.at : merged_chunk(i);
    SealChunk(i, src, part.length, out + (layout_.ChunkOffset(i) - lo));
  }
  // Index blocks between the written chunks travel in the same write.
  for (uint64_t g = first / kIndexGroupChunks; indexed() && g < last / kIndexGroupChunks; ++g) {
    tags_.CopyBlock(g, out + (layout_.IndexBlockOffset(g) - lo));
  }
  if (int rc = PwriteAll(out, hi - lo, lo); rc < 0) {  // e.g. ENOSPC part-way
    // An append to a partial last chunk rewrote it in place: its old bytes are still intact
    // in the merge buffer (the write starts at or after them), so it can be put back.
    std::optional<ChunkToRestore> restore;
    if (offset >= size_ && size_ % chunk != 0) {
      restore = ChunkToRestore{first, merged_chunk(first), size_ % chunk};
    }
    RecoverFromFailedChange(first, last, restore);
    return rc;
  }
  size_ = new_size;
  if (indexed()) {
    if (int rc = WriteIndex(first, last, old_count, lo, hi); rc < 0) return rc;
  }
  return static_cast<ssize_t>(in.size());
}

int CipherFile::Rekey() {
  // Nothing written before may ever be spliced back in: the empty file gets a fresh DEK (and
  // the current format version). The unsealed record goes first, so that a crash in between
  // leaves an empty, unsealed file under the old header.
  std::optional<NewHeader> header;
  try {
    const uint64_t generation = key_generation_ == UINT64_MAX ? UINT64_MAX : key_generation_ + 1;
    header.emplace(BuildNewHeader(volume_, fixed_.chunk_size, file_id_, generation));
  } catch (const Error& e) {
    Log(LogLevel::kError, CurrentName() + ": " + e.what());
    return -ErrnoFor(e.kind());  // kKeyUnavailable: EACCES
  }
  // The whole change under the header lock, so that `envelopectl rewrap` never writes a key
  // slot of the old DEK beside the new one. Nothing is changed if the lock cannot be had.
  HeaderLock lock(fd_.get());
  if (lock.busy()) {
    Log(LogLevel::kWarning, CurrentName() + ": not emptied: another process holds its header lock");
    return -EBUSY;
  }
  if (int rc = PrepareModify(/*changes_size=*/true, false, /*take_header_lock=*/false); rc < 0) {
    return rc;
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(kHeaderSize)) != 0) return -errno;
  size_ = 0;  // a consistent step: an empty file under the old header
  tags_.Clear();
  index_stale_ = false;
  // First a key slot that does not open the DEK in use, if one does not (header_writes.h).
  const int first_key_slot = !slot_opens_[0] ? 0 : !slot_opens_[1] ? 1 : 0;
  int rc = 0;
  for (const HeaderWrite& w : PlanRekeyWrites(fixed_, header->bytes, first_key_slot)) {
    rc = PwriteAll(w.bytes.data(), w.bytes.size(), w.offset);
    if (rc == 0 && w.flush_after && ::fdatasync(fd_.get()) != 0) rc = -errno;
    if (rc < 0) break;
  }
  if (rc < 0) return AdoptHeaderAfterFailedRekey(*header, rc);
  fixed_ = ParseFixedHeader(header->bytes);
  layout_ = ChunkLayout::Of(fixed_);
  keys_ = std::move(header->keys);
  key_generation_ = ParseKeySlot(std::span<const uint8_t, kKeySlotSize>(
                                     header->bytes.data() + kKeySlotOffset[0], kKeySlotSize))
                        .generation;
  slot_opens_[0] = slot_opens_[1] = true;
  disk_state_ = EmptyFileState(2);
  return 0;
}

int CipherFile::AdoptHeaderAfterFailedRekey(NewHeader& fresh, int rc) {
  // The header on disk is the old one, the new one, or (a failure part-way, such as a full
  // disk on a copy-on-write file system) a mix that opens as one of them: memory follows it,
  // so that what is written next is readable. If it opens as neither, nothing more is written.
  Log(LogLevel::kError, CurrentName() +
                            ": the new header after a truncation to zero was not written whole: " +
                            std::strerror(-rc));
  HeaderRead now = ReadHeader(fd_.get());
  OpenedHeader opened = OpenHeader(now, volume_, /*check_length=*/false);
  if (!opened.ok) {
    broken_ = true;
    ReportDamage(reporter_, {CurrentName(), std::nullopt,
                             "the header opens with no data key after a failed truncation to "
                             "zero: nothing more is written to the file (EIO)"});
    return -EIO;
  }
  FileKeys keys = FileKeys::Derive(opened.dek);
  if (sodium_memcmp(keys.content.data(), fresh.keys.content.data(), kKeySize) == 0) {
    fixed_ = now.fixed;
    layout_ = ChunkLayout::Of(fixed_);
    keys_ = std::move(keys);
  }
  key_generation_ = std::max(now.slots[0].generation, now.slots[1].generation);
  slot_opens_[0] = opened.slot_opens[0];
  slot_opens_[1] = opened.slot_opens[1];
  disk_state_ = opened.state;
  return rc;
}

int CipherFile::Truncate(uint64_t new_size) {
  std::unique_lock lock(mu_);
  if (new_size == size_) return 0;
  modifications_.fetch_add(1);
  dirty_ = true;
  if (new_size > size_) return ExtendTo(new_size);
  if (new_size == 0) return Rekey();
  // A new partial last chunk is read before the cut and written after it: a failure at any
  // step leaves memory and disk in agreement.
  const uint64_t rem = new_size % fixed_.chunk_size;
  const uint64_t index = new_size / fixed_.chunk_size;
  uint8_t* plain = Scratch(PlainScratch(), fixed_.chunk_size);
  if (rem != 0) {
    if (int rc = ReadOldChunk(index, layout_.ChunkLength(index, size_), plain); rc < 0) return rc;
  }
  if (int rc = PrepareModify(/*changes_size=*/true, false); rc < 0) return rc;
  if (::ftruncate(fd_.get(), static_cast<off_t>(layout_.CipherSize(new_size))) != 0) {
    return -errno;
  }
  size_ = new_size;
  if (indexed()) tags_.Resize(layout_.ChunkCount(new_size));  // the last group has no block
  if (rem != 0) {
    if (int rc = WriteChunk(index, plain, rem); rc < 0) {
      RecoverFromFailedChange(index, index);
      return rc;
    }
  }
  return 0;
}

int CipherFile::Allocate(int mode, uint64_t offset, uint64_t length) {
  if (mode & ~FALLOC_FL_KEEP_SIZE) return -EOPNOTSUPP;
  if ((mode & FALLOC_FL_KEEP_SIZE) != 0) return 0;  // nothing visible changes
  {
    std::shared_lock lock(mu_);
    if (offset + length <= size_) return 0;  // already allocated, or an authenticated hole
  }
  return Truncate(offset + length);
}

}  // namespace envelopefs
