// CipherFile — see cipher_file.h; the byte layout is in file_format.h.
#include "envelopefs/cipher_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "envelopefs/volume.h"
#include "header_lock.h"
#include "kept_mtime.h"

namespace envelopefs {
namespace {

using namespace format;

// Per-thread scratch buffers: the data path allocates nothing per chunk or per request once
// a thread has seen its largest request.
std::vector<uint8_t>& CipherScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
std::vector<uint8_t>& PlainScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
std::vector<uint8_t>& OutputScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
uint8_t* Scratch(std::vector<uint8_t>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// The current path of `fd` (for log lines), or `fallback`.
std::string FdPath(int fd, const std::string& fallback) {
  char path[4096];
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(proc.c_str(), path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : fallback;
}

// The tag stored with a chunk of `plain_len` bytes at `cipher`.
ChunkTag StoredTag(const uint8_t* cipher, uint64_t plain_len) {
  ChunkTag tag;
  std::memcpy(tag.data(), cipher + kChunkNonceSize + plain_len, kChunkTagSize);
  return tag;
}

// Many small reads at scattered offsets (index blocks, chunk tags) on a cold cache: each batch
// is announced to the kernel (POSIX_FADV_WILLNEED) before it is read, so the disk serves the
// batch in parallel instead of one read at a time. Batches bound the memory it takes.
class ReadAhead {
 public:
  explicit ReadAhead(int fd) : fd_(fd) {}
  // Queues a read of `len` bytes at `offset` for item `id`; runs `read` on a full batch.
  template <typename F>
  void Add(uint64_t offset, uint64_t len, uint64_t id, F&& read) {
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
    batch_.emplace_back(offset, id);
    if (batch_.size() == kBatch) Finish(read);
  }
  // Runs read(offset, id) for every queued item, in order.
  template <typename F>
  void Finish(F&& read) {
    for (const auto& [offset, id] : batch_) read(offset, id);
    batch_.clear();
  }

 private:
  static constexpr size_t kBatch = 1024;
  int fd_;
  std::vector<std::pair<uint64_t, uint64_t>> batch_;
};

}  // namespace

CipherFile::CipherFile(UniqueFd fd, const Volume& volume, const FixedHeader& fixed, FileKeys keys,
                       uint64_t key_generation, std::string name)
    : fd_(std::move(fd)),
      volume_(volume),
      file_id_(fixed.file_id),
      name_(std::move(name)),
      fixed_(fixed),
      layout_(ChunkLayout::Of(fixed)),
      keys_(std::move(keys)),
      key_generation_(key_generation) {}

namespace {

// The header of an empty file: a fresh DEK (for every new file and every truncation to zero)
// wrapped under the volume's active KEK, and the keys derived from it. A new DEK may only be
// wrapped under a KEK version known to be the active one: throws if the keyring may be stale.
struct NewHeader {
  HeaderBytes bytes;
  FileKeys keys;
};
NewHeader BuildNewHeader(const Volume& volume, uint32_t chunk_size, const FileId& file_id,
                         uint64_t key_generation) {
  if (!volume.keyring_current()) {
    throw Error(ErrorKind::kKeyUnavailable,
                "the keyring on disk changed and cannot be read with this mount's master key "
                "(a change of master key?): new files are refused, remount with the new key");
  }
  Volume::KekCopy kek = volume.ActiveKek();
  SecureBytes dek = SecureBytes::Random(kKeySize);
  return NewHeader{
      BuildHeader(chunk_size, file_id, dek, kek.info.id, kek.info.version, kek.key, key_generation),
      FileKeys::Derive(dek)};
}

}  // namespace

std::shared_ptr<CipherFile> CipherFile::Create(UniqueFd fd, const Volume& volume,
                                               std::string display_name) {
  FileId file_id;
  RandomBytes(file_id);
  NewHeader header = BuildNewHeader(volume, volume.config().chunk_size, file_id, 1);
  std::shared_ptr<CipherFile> file(
      new CipherFile(std::move(fd), volume, ParseFixedHeader(header.bytes), std::move(header.keys),
                     1, std::move(display_name)));
  if (int rc = file->PwriteAll(header.bytes.data(), header.bytes.size(), 0); rc < 0) {
    errno = -rc;
    ThrowSystemError("writing the header of " + file->name_);
  }
  file->disk_state_ = EmptyFileState(2);
  file->dirty_ = true;  // a new file is sealed after its first close, even if left empty
  return file;
}

std::shared_ptr<CipherFile> CipherFile::Open(UniqueFd fd, const Volume& volume,
                                             std::string display_name) {
  HeaderRead header = ReadHeader(fd.get());
  if (header.status != HeaderStatus::kOk) {
    if (header.status != HeaderStatus::kUnreadable) {
      ReportTamper(FdPath(fd.get(), display_name), header.reason);
    }
    throw Error(header.status == HeaderStatus::kUnreadable ? ErrorKind::kIo : ErrorKind::kFormat,
                display_name + ": " + header.reason);
  }
  OpenedHeader opened = OpenHeader(header, volume, /*check_length=*/false);
  if (!opened.ok) {
    if (opened.kind == ErrorKind::kAuthentication) {
      ReportTamper(FdPath(fd.get(), display_name), opened.problem);
    }
    throw Error(opened.kind, display_name + ": " + opened.problem);
  }
  std::shared_ptr<CipherFile> file(new CipherFile(
      std::move(fd), volume, header.fixed, FileKeys::Derive(opened.dek),
      std::max(header.slots[0].generation, header.slots[1].generation), std::move(display_name)));
  file->disk_state_ = opened.state;
  const bool sealed = opened.state.sealed();
  if (sealed) {
    if (auto problem = LengthProblem(header, &opened.state)) {
      ReportTamper(file->CurrentName(), *problem);
      throw Error(ErrorKind::kAuthentication, file->name_ + ": " + *problem);
    }
    file->size_ = opened.state.size;
  } else {
    // Unsealed: the file was being written when the daemon stopped, or an older state was put
    // back. Its length and chunk versions are not authenticated; a torn last chunk is left out.
    Log(LogLevel::kWarning, "unsealed: " + EscapeName(FdPath(file->fd(), file->name_)) +
                                ": its last write was interrupted (or an older state was put "
                                "back): length and chunk versions are not proven");
    file->size_ = opened.plain_size ? *opened.plain_size
                                    : header.layout().ReportedPlainSize(header.cipher_size);
  }
  if (file->indexed()) {
    const int access = ::fcntl(file->fd(), F_GETFL) & O_ACCMODE;
    file->LoadIndex(sealed, access != O_RDONLY);
  }
  return file;
}

void CipherFile::ForEachDataRegion(uint64_t from, uint64_t to,
                                   const std::function<void(uint64_t, uint64_t)>& visit) const {
  uint64_t pos = from;
  while (pos < to) {
    off_t data = ::lseek(fd_.get(), static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return;  // only holes from here on
      visit(pos, to);              // the file system cannot tell: all of it
      return;
    }
    if (static_cast<uint64_t>(data) >= to) return;
    off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
    const uint64_t end = hole < 0 ? to : std::min<uint64_t>(to, static_cast<uint64_t>(hole));
    visit(static_cast<uint64_t>(data), end);
    pos = end;
  }
}

void CipherFile::ReadInlineTags(uint64_t first, uint64_t end) {
  // The tags stored with chunks [first, end): in one read when they are close together, else
  // one small read per chunk, skipping the holes of a sparse file.
  if (first >= end) return;
  const uint64_t lo = layout_.ChunkOffset(first);
  const uint64_t hi =
      layout_.ChunkOffset(end - 1) + layout_.ChunkLength(end - 1, size_) + kChunkOverhead;
  auto tag_offset = [&](uint64_t i) {
    return layout_.ChunkOffset(i) + kChunkNonceSize + layout_.ChunkLength(i, size_);
  };
  constexpr uint64_t kOneRead = 1 << 20;
  if (hi - lo <= kOneRead) {
    std::vector<uint8_t> span(hi - lo);
    if (PreadAll(span.data(), span.size(), lo) == 0) {
      ChunkTag tag;
      for (uint64_t i = first; i < end; ++i) {
        std::memcpy(tag.data(), span.data() + (tag_offset(i) - lo), kChunkTagSize);
        tags_.Set(i, tag);
      }
      return;
    }
  }
  ReadAhead ahead(fd_.get());
  ChunkTag tag;
  auto read_tag = [&](uint64_t offset, uint64_t i) {
    if (PreadAll(tag.data(), kChunkTagSize, offset) < 0) tag = ChunkTag{};
    tags_.Set(i, tag);  // an unreadable tag makes the chunk fail when read
  };
  ForEachDataRegion(lo, hi, [&](uint64_t data, uint64_t hole) {
    for (uint64_t i = std::max(first, layout_.ChunkAt(data));
         i < end && layout_.ChunkOffset(i) < hole; ++i) {
      ahead.Add(tag_offset(i), kChunkTagSize, i, read_tag);
    }
  });
  ahead.Finish(read_tag);
}

void CipherFile::LoadIndex(bool sealed, bool writable) {
  const uint64_t count = layout_.ChunkCount(size_);
  tags_.Clear();
  tags_.Resize(count);
  // A sealed file's index blocks are current; an unsealed one's may be stale after a crash
  // between a chunk write and its index write, so its index is rebuilt from the chunks.
  const uint64_t groups = layout_.IndexBlockCount(count);
  if (sealed && groups > 0) {
    // The blocks of the groups that hold data (a sparse file's holes are skipped).
    std::vector<uint8_t> block(kIndexBlockSize);
    auto read_block = [&](uint64_t offset, uint64_t g) {
      if (int rc = PreadAll(block.data(), block.size(), offset); rc < 0) {
        errno = -rc;
        ThrowSystemError(name_ + ": reading index block " + std::to_string(g));
      }
      tags_.SetBlock(g, block.data());
    };
    ReadAhead ahead(fd_.get());
    ForEachDataRegion(layout_.IndexBlockOffset(0),
                      layout_.IndexBlockOffset(groups - 1) + kIndexBlockSize,
                      [&](uint64_t data, uint64_t hole) {
                        for (uint64_t g = layout_.GroupAt(data);
                             g < groups && layout_.IndexBlockOffset(g) < hole; ++g) {
                          if (layout_.IndexBlockOffset(g) + kIndexBlockSize > data) {
                            ahead.Add(layout_.IndexBlockOffset(g), kIndexBlockSize, g, read_block);
                          }
                        }
                      });
    ahead.Finish(read_block);
  }
  ReadInlineTags(sealed ? groups * kIndexGroupChunks : 0, count);
  if (sealed) {
    if (tags_.Digest() != disk_state_.digest) {
      std::string detail = LocalizeDamage().value_or(
          "the chunks are not the versions last written (a chunk or the index was replaced by "
          "an older copy)");
      ReportTamper(CurrentName(), detail);
      throw Error(ErrorKind::kAuthentication, name_ + ": " + detail);
    }
  } else if (writable) {
    if (int rc = WriteIndex(1, 0, 0, 0, 0); rc < 0) {  // persist the rebuilt index
      errno = -rc;
      ThrowSystemError(name_ + ": writing the chunk index");
    }
  }
}

std::optional<std::string> CipherFile::LocalizeDamage() {
  // Only after a failed index check: name the first chunk that fails on its own.
  std::vector<uint8_t> cipher(layout_.stride());
  std::vector<uint8_t> plain(fixed_.chunk_size);
  std::optional<std::string> found;
  const uint64_t count = tags_.count();
  ForEachDataRegion(
      layout_.ChunkOffset(0), layout_.CipherSize(size_), [&](uint64_t data, uint64_t hole) {
        for (uint64_t i = layout_.ChunkAt(data);
             !found && i < count && layout_.ChunkOffset(i) < hole; ++i) {
          const uint64_t len = layout_.ChunkLength(i, size_);
          if (PreadAll(cipher.data(), len + kChunkOverhead, layout_.ChunkOffset(i)) < 0) {
            found = "chunk " + std::to_string(i) + ": cannot be read";
          } else if (const char* problem = ChunkProblem(i, len, cipher.data(), plain.data())) {
            found = "chunk " + std::to_string(i) + ": " + problem;
          }
        }
      });
  return found;
}

void CipherFile::set_display_name(std::string name) {
  std::unique_lock lock(name_mu_);
  name_ = std::move(name);
}

std::string CipherFile::CurrentName() const {
  // The file's current path (it may have been renamed since it was opened), else its name.
  std::string fallback;
  {
    std::shared_lock lock(name_mu_);
    fallback = name_;
  }
  return FdPath(fd_.get(), fallback);
}

void CipherFile::LogDamage(uint64_t chunk, const std::string& what) const {
  ReportTamper(CurrentName(), "chunk " + std::to_string(chunk) + ": " + what + " (EIO)");
}

uint64_t CipherFile::size() const {
  std::shared_lock lock(mu_);
  return size_;
}

uint16_t CipherFile::format_version() const {
  std::shared_lock lock(mu_);
  return fixed_.version;
}

bool CipherFile::sealed() const {
  std::shared_lock lock(mu_);
  return disk_state_.sealed();
}

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
  LogDamage(index, problem);
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
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t first = offset / chunk;
  const uint64_t last = (end - 1) / chunk;
  const uint64_t lo = layout_.ChunkOffset(first);
  const uint64_t hi = layout_.ChunkOffset(last) + layout_.ChunkLength(last, size_) + kChunkOverhead;
  uint8_t* cipher = Scratch(CipherScratch(), hi - lo);
  if (int rc = PreadAll(cipher, hi - lo, lo); rc < 0) {
    if (rc == -EIO) LogDamage(last, "cipher file is shorter than its size implies");
    return rc;
  }
  for (uint64_t i = first; i <= last; ++i) {
    const uint64_t start = i * chunk;
    const uint64_t len = layout_.ChunkLength(i, size_);
    const uint64_t from = std::max(offset, start) - start;
    const uint64_t to = std::min(end, start + len) - start;
    const uint8_t* src = cipher + (layout_.ChunkOffset(i) - lo);
    if (from == 0 && to == len) {
      if (int rc = ReadChunk(i, len, src, out.data() + (start - offset)); rc < 0) return rc;
    } else {
      uint8_t* plain = Scratch(PlainScratch(), chunk);
      if (int rc = ReadChunk(i, len, src, plain); rc < 0) return rc;
      std::memcpy(out.data() + (start + from - offset), plain + from, to - from);
    }
  }
  PrefetchIfSequential(offset, end, hi - lo);
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

int CipherFile::WriteState(uint64_t size, uint32_t flags, bool sealed, bool durable) {
  // A sealed state goes into both slots (two consecutive records), so that no slot holds an
  // older record that could be replayed alone; an unsealed one into the next slot only.
  if (sealed && index_stale_) {
    // A failed write may have left index blocks that disagree with the tags: they are
    // rewritten, durably, before a digest a later open must reproduce from them is sealed.
    if (int rc = WriteIndex(1, 0, 0, 0, 0); rc < 0) return rc;
    if (::fdatasync(fd_.get()) != 0) return -errno;
    index_stale_ = false;
  }
  const uint16_t version = fixed_.version;
  const size_t slot_size = StateSlotSize(version);
  FileState next{disk_state_.counter + 1, size, sealed ? flags | kStateSealed : flags, {}};
  if (sealed && indexed()) next.digest = tags_.Digest();
  const int records = sealed ? 2 : 1;
  uint8_t region[2 * kMaxStateSlotSize];
  int slot = StateSlotFor(next.counter);
  for (int r = 0; r < records; ++r) {
    StateSlotBytes bytes = SealState(version, keys_.state, fixed_.file_id, next);
    std::memcpy(region + StateSlotFor(next.counter) * slot_size, bytes.data(), slot_size);
    if (r + 1 < records) ++next.counter;
  }
  const size_t offset = records == 2 ? StateSlotOffset(version, 0) : StateSlotOffset(version, slot);
  const uint8_t* data = records == 2 ? region : region + slot * slot_size;
  if (int rc = PwriteAll(data, records * slot_size, offset); rc < 0) return rc;
  if (durable && ::fdatasync(fd_.get()) != 0) return -errno;
  disk_state_ = next;
  return 0;
}

int CipherFile::PrepareModify(bool changes_size, bool creates_holes) {
  // Format 1 keeps no index digest: an overwrite in place leaves the sealed record valid.
  if (!indexed() && !changes_size && !creates_holes) return 0;
  uint32_t flags = disk_state_.flags & ~kStateSealed;
  if (creates_holes) flags |= kStateSparse;
  if (flags == disk_state_.flags) return 0;  // already unsealed (and sparse if needed)
  // Durable before anything changes: a crash can never leave a sealed record that disagrees
  // with the file's chunks or length, nor holes in a file not marked sparse.
  return WriteState(size_, flags, /*sealed=*/false, /*durable=*/true);
}

int CipherFile::WriteIndex(uint64_t first, uint64_t last, uint64_t old_count, uint64_t buffer_lo,
                           uint64_t buffer_hi) {
  const uint64_t closed_now = layout_.IndexBlockCount(tags_.count());
  const uint64_t closed_before = layout_.IndexBlockCount(old_count);
  auto in_buffer = [&](uint64_t offset) { return offset >= buffer_lo && offset < buffer_hi; };
  auto write_entries = [&](uint64_t a, uint64_t b) {
    // The tags of chunks [a, b] of one group, at their place in its block.
    const uint64_t g = a / kIndexGroupChunks;
    std::span<const uint8_t> entries = tags_.Entries(a, b);
    return PwriteAll(entries.data(), entries.size(),
                     layout_.IndexBlockOffset(g) + (a - g * kIndexGroupChunks) * kChunkTagSize);
  };
  // Groups closed by this change get their whole block (none for groups of holes only).
  int rc = 0;
  tags_.ForEachDataGroup(closed_before, closed_now, [&](uint64_t g) {
    if (rc < 0 || in_buffer(layout_.IndexBlockOffset(g))) return;
    rc = write_entries(g * kIndexGroupChunks, (g + 1) * kIndexGroupChunks - 1);
  });
  // Groups closed before: only the entries of the chunks that changed.
  for (uint64_t g = first / kIndexGroupChunks;
       rc == 0 && first <= last && g <= last / kIndexGroupChunks &&
       g < std::min(closed_before, closed_now);
       ++g) {
    if (in_buffer(layout_.IndexBlockOffset(g))) continue;
    rc = write_entries(std::max(first, g * kIndexGroupChunks),
                       std::min(last, (g + 1) * kIndexGroupChunks - 1));
  }
  if (rc < 0) index_stale_ = true;  // rewritten whole before the next seal
  return rc;
}

void CipherFile::RecoverFromFailedChange(uint64_t first, uint64_t last,
                                         const std::optional<ChunkToRestore>& restore) {
  // PrepareModify made the file unsealed on disk before anything changed, so nothing here is
  // promised yet; what matters is that memory describes the disk again, or the next seal would
  // authenticate a state that no open can reproduce.
  struct stat st;
  if (::fstat(fd_.get(), &st) == 0) {
    const uint64_t on_disk = static_cast<uint64_t>(st.st_size);
    size_ = std::min(size_, layout_.ReportedPlainSize(on_disk));
    if (on_disk > layout_.CipherSize(size_) &&
        ::ftruncate(fd_.get(), static_cast<off_t>(layout_.CipherSize(size_))) != 0) {
      Log(LogLevel::kError,
          CurrentName() + ": cannot cut back a failed write: " + std::string(std::strerror(errno)));
    }
  }
  if (restore && layout_.ChunkLength(restore->index, size_) == restore->len) {
    // The old last chunk was rewritten in place to grow: it is put back as it was (this fits
    // where it stood, so a full disk does not stop it).
    if (WriteChunk(restore->index, restore->plain, restore->len) < 0) {
      Log(LogLevel::kError, CurrentName() + ": cannot put back chunk " +
                                std::to_string(restore->index) + " after a failed write");
    }
  }
  if (!indexed()) return;
  const uint64_t count = layout_.ChunkCount(size_);
  tags_.Resize(count);
  ReadInlineTags(first, std::min(last + 1, count));  // a torn chunk keeps its torn tag: EIO
  index_stale_ = true;
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
  const uint64_t first = offset / chunk;
  const uint64_t last = (end - 1) / chunk;
  auto written_whole = [&](uint64_t i) {
    return offset <= i * chunk && end >= i * chunk + layout_.ChunkLength(i, new_size);
  };
  // Chunks written in part (only the first and the last can be) are merged with their old
  // contents before anything changes, so that a damaged one fails the write cleanly.
  uint8_t* merged = Scratch(PlainScratch(), 2 * chunk);
  auto merged_chunk = [&](uint64_t i) { return merged + (i == first ? 0 : chunk); };
  for (uint64_t i = first; i <= last; i = (i == first && last > first) ? last : last + 1) {
    if (written_whole(i)) continue;
    const uint64_t start = i * chunk;
    const uint64_t len = layout_.ChunkLength(i, new_size);
    const uint64_t old_len = layout_.ChunkLength(i, size_);
    uint8_t* plain = merged_chunk(i);
    if (old_len > 0) {
      if (int rc = ReadOldChunk(i, old_len, plain); rc < 0) return rc;
    }
    if (len > old_len) std::memset(plain + old_len, 0, len - old_len);
    const uint64_t from = std::max(offset, start);
    const uint64_t to = std::min(end, start + len);
    std::memcpy(plain + (from - start), in.data() + (from - offset), to - from);
  }
  const uint64_t old_count = layout_.ChunkCount(size_);
  if (indexed()) tags_.Resize(layout_.ChunkCount(new_size));
  const uint64_t lo = layout_.ChunkOffset(first);
  const uint64_t hi =
      layout_.ChunkOffset(last) + layout_.ChunkLength(last, new_size) + kChunkOverhead;
  uint8_t* out = Scratch(OutputScratch(), hi - lo);
  for (uint64_t i = first; i <= last; ++i) {
    const uint8_t* src = written_whole(i) ? in.data() + (i * chunk - offset) : merged_chunk(i);
    SealChunk(i, src, layout_.ChunkLength(i, new_size), out + (layout_.ChunkOffset(i) - lo));
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
    header.emplace(BuildNewHeader(volume_, fixed_.chunk_size, file_id_, key_generation_ + 1));
  } catch (const Error& e) {
    Log(LogLevel::kError, CurrentName() + ": " + e.what());
    return -EACCES;
  }
  if (int rc = PrepareModify(/*changes_size=*/true, false); rc < 0) return rc;
  if (::ftruncate(fd_.get(), static_cast<off_t>(kHeaderSize)) != 0) return -errno;
  size_ = 0;  // a consistent step: an empty file under the old header
  tags_.Clear();
  index_stale_ = false;
  {
    HeaderLock lock(fd_.get());
    if (int rc = PwriteAll(header->bytes.data(), header->bytes.size(), 0); rc < 0) return rc;
  }
  fixed_ = ParseFixedHeader(header->bytes);
  layout_ = ChunkLayout::Of(fixed_);
  keys_ = std::move(header->keys);
  ++key_generation_;
  disk_state_ = EmptyFileState(2);
  return 0;
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

bool CipherFile::NeedsSeal() const {
  std::shared_lock lock(mu_);
  return dirty_;
}

int CipherFile::Sync() {
  std::unique_lock lock(mu_);
  if (::fdatasync(fd_.get()) != 0) return -errno;
  if (!dirty_) return 0;
  // The data is durable; now record the exact state, durably.
  return Seal(/*durable=*/true);
}

int CipherFile::SealIfUnchanged(uint64_t count) {
  std::unique_lock lock(mu_);
  if (modifications_.load() != count || !dirty_) return 0;
  return Seal(/*durable=*/false);
}

int CipherFile::Seal(bool durable) {
  KeptMtime kept(fd_.get());
  int rc =
      kept.Write([&] { return WriteState(size_, disk_state_.flags, /*sealed=*/true, durable); });
  if (rc < 0) return rc;
  dirty_ = false;
  if (auto change = kept.Restore(); change && seal_observer_) {
    seal_observer_(change->before, change->after);
  }
  return 0;
}

int CipherFile::SetTimes(const struct timespec times[2]) {
  std::unique_lock lock(mu_);
  return ::futimens(fd_.get(), times) == 0 ? 0 : -errno;
}

}  // namespace envelopefs
