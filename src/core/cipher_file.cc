#include "envelopefs/cipher_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

using namespace format;

constexpr uint64_t kNoDamage = ~0ull;

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
uint8_t* Scratch(std::vector<uint8_t>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

bool AllZero(const uint8_t* p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) acc |= p[i];
  return acc == 0;
}

}  // namespace

CipherFile::CipherFile(UniqueFd fd, const FixedHeader& fixed, FileKeys keys, std::string name)
    : fd_(std::move(fd)),
      fixed_(fixed),
      layout_{fixed.chunk_size},
      keys_(std::move(keys)),
      name_(std::move(name)) {}

std::shared_ptr<CipherFile> CipherFile::Create(UniqueFd fd, const Volume& volume,
                                               std::string display_name) {
  Volume::KekCopy kek = volume.ActiveKek();
  FileId file_id;
  RandomBytes(file_id);
  SecureBytes dek = SecureBytes::Random(kKeySize);  // a fresh DEK for every file
  HeaderBytes header =
      BuildHeader(volume.config().chunk_size, file_id, dek, kek.info.id, kek.info.version, kek.key);
  FixedHeader fixed = ParseFixedHeader(header);
  std::shared_ptr<CipherFile> file(
      new CipherFile(std::move(fd), fixed, FileKeys::Derive(dek), std::move(display_name)));
  if (int rc = file->PwriteAll(header.data(), header.size(), 0); rc < 0) {
    errno = -rc;
    ThrowSystemError("writing the header of " + file->name_);
  }
  file->disk_state_ = FileState{1, 0, 0};
  return file;
}

std::shared_ptr<CipherFile> CipherFile::Open(UniqueFd fd, const Volume& volume,
                                             std::string display_name) {
  HeaderBytes header{};
  ssize_t n = ::pread(fd.get(), header.data(), header.size(), 0);
  if (n < 0) ThrowSystemError("reading the header of " + display_name);
  if (static_cast<size_t>(n) < header.size()) {
    throw Error(ErrorKind::kFormat, display_name + ": missing or short header");
  }
  FixedHeader fixed = ParseFixedHeader(header);
  std::span<const uint8_t> fixed_bytes(header.data(), kFixedSize);

  // Try the key slot with the higher generation first; the other one survives a torn rewrap.
  KeySlotInfo info[2];
  for (int i = 0; i < 2; ++i) {
    info[i] = ParseKeySlot(
        std::span<const uint8_t, kKeySlotSize>(header.data() + kKeySlotOffset[i], kKeySlotSize));
  }
  int order[2] = {0, 1};
  if (info[1].generation > info[0].generation) std::swap(order[0], order[1]);
  std::optional<SecureBytes> dek;
  bool key_missing = false;
  for (int i : order) {
    SecureBytes kek;
    if (!volume.FindKek(info[i].kek_id, info[i].kek_version, kek)) {
      key_missing = true;
      continue;
    }
    dek = UnwrapDek(
        fixed_bytes,
        std::span<const uint8_t, kKeySlotSize>(header.data() + kKeySlotOffset[i], kKeySlotSize),
        kek);
    if (dek) break;
  }
  if (!dek) {
    if (key_missing) {
      throw Error(ErrorKind::kKeyUnavailable, display_name + ": needs KEK version " +
                                                  std::to_string(info[order[0]].kek_version) +
                                                  ", which is retired or unknown");
    }
    throw Error(ErrorKind::kAuthentication, display_name + ": header does not authenticate");
  }

  std::shared_ptr<CipherFile> file(
      new CipherFile(std::move(fd), fixed, FileKeys::Derive(*dek), std::move(display_name)));
  std::optional<FileState> best;
  for (int i = 0; i < 2; ++i) {
    auto state = OpenState(file->keys_.state, fixed.file_id,
                           std::span<const uint8_t, kStateSlotSize>(
                               header.data() + kStateSlotOffset[i], kStateSlotSize));
    if (state && (!best || state->counter > best->counter)) best = state;
  }
  if (!best) {
    throw Error(ErrorKind::kAuthentication, file->name_ + ": state record does not authenticate");
  }
  file->disk_state_ = *best;

  struct stat st;
  if (::fstat(file->fd(), &st) != 0) ThrowSystemError("fstat " + file->name_);
  std::optional<uint64_t> plain = file->layout_.PlainSize(static_cast<uint64_t>(st.st_size));
  file->size_ = plain ? *plain : file->layout_.ReportedPlainSize(st.st_size);
  bool damaged = !plain || (best->sealed() && best->size != *plain);
  if (damaged) {
    uint64_t intact = best->sealed() ? std::min(best->size, file->size_) : file->size_;
    if (intact == 0) {
      throw Error(ErrorKind::kAuthentication,
                  file->CurrentName() + ": cipher file length does not match its sealed size (" +
                      std::to_string(best->size) + " bytes): cut or extended");
    }
    file->damaged_from_ = (intact - 1) / fixed.chunk_size * fixed.chunk_size;
    ReportTamper(file->CurrentName(), "cipher file length does not match its sealed size; chunk " +
                                          std::to_string(file->damaged_from_ / fixed.chunk_size) +
                                          " on reads as EIO");
  }
  return file;
}

void CipherFile::set_display_name(std::string name) {
  std::unique_lock lock(name_mu_);
  name_ = std::move(name);
}

std::string CipherFile::CurrentName() const {
  // The file's current path (it may have been renamed since it was opened), else its name.
  char path[4096];
  std::string proc = "/proc/self/fd/" + std::to_string(fd_.get());
  ssize_t n = ::readlink(proc.c_str(), path, sizeof path - 1);
  if (n > 0) return std::string(path, static_cast<size_t>(n));
  std::shared_lock lock(name_mu_);
  return name_;
}

void CipherFile::LogDamage(uint64_t chunk, const char* what) const {
  ReportTamper(CurrentName(), "chunk " + std::to_string(chunk) + ": " + what + " (EIO)");
}

uint64_t CipherFile::size() const {
  std::shared_lock lock(mu_);
  return size_;
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

int CipherFile::ReadChunk(uint64_t index, uint64_t plain_len, uint8_t* cipher,
                          uint8_t* plain) const {
  const uint8_t* nonce = cipher;
  if (disk_state_.sparse() && AllZero(nonce, kChunkNonceSize)) {
    // A random nonce is all-zero with probability 2^-96: this is a hole, or a zeroed chunk.
    if (AllZero(cipher, plain_len + kChunkOverhead)) {
      std::memset(plain, 0, plain_len);
      return 0;
    }
  }
  auto aad = ChunkAad(fixed_.file_id, index);
  bool ok = ThreadAead().Open(
      keys_.content.span(), std::span<const uint8_t, kGcmNonceSize>(nonce, kGcmNonceSize), aad,
      std::span<const uint8_t>(cipher + kChunkNonceSize, plain_len),
      std::span<const uint8_t, kGcmTagSize>(cipher + kChunkNonceSize + plain_len, kGcmTagSize),
      std::span<uint8_t>(plain, plain_len));
  if (ok) return 0;
  LogDamage(index, AllZero(cipher, plain_len + kChunkOverhead) ? "all-zero chunk in a file "
                                                                 "without holes"
                                                               : "authentication failed");
  return -EIO;
}

void CipherFile::SealChunk(uint64_t index, const uint8_t* plain, uint64_t plain_len,
                           uint8_t* cipher) const {
  GcmNonce nonce = RandomNonce();  // fresh on every write: never reused under this file's key
  std::memcpy(cipher, nonce.data(), nonce.size());
  auto aad = ChunkAad(fixed_.file_id, index);
  ThreadAead().Seal(
      keys_.content.span(), nonce, aad, std::span<const uint8_t>(plain, plain_len),
      std::span<uint8_t>(cipher + kChunkNonceSize, plain_len),
      std::span<uint8_t, kGcmTagSize>(cipher + kChunkNonceSize + plain_len, kGcmTagSize));
}

ssize_t CipherFile::Read(std::span<uint8_t> out, uint64_t offset) {
  std::shared_lock lock(mu_);
  if (offset >= size_ || out.empty()) return 0;
  const uint64_t end = std::min<uint64_t>(offset + out.size(), size_);
  if (end > damaged_from_) {
    LogDamage(std::max(offset, damaged_from_) / fixed_.chunk_size,
              "missing or extra data: the file length differs from its sealed size");
    return -EIO;
  }
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t first = offset / chunk;
  const uint64_t last = (end - 1) / chunk;
  const uint64_t last_len = std::min(chunk, size_ - last * chunk);
  const size_t cipher_len = (last - first) * layout_.stride() + last_len + kChunkOverhead;
  uint8_t* cipher = Scratch(CipherScratch(), cipher_len);
  if (int rc = PreadAll(cipher, cipher_len, layout_.ChunkOffset(first)); rc < 0) {
    if (rc == -EIO) LogDamage(last, "cipher file is shorter than its size implies");
    return rc;
  }
  for (uint64_t i = first; i <= last; ++i) {
    const uint64_t start = i * chunk;
    const uint64_t len = std::min(chunk, size_ - start);
    const uint64_t from = std::max(offset, start) - start;
    const uint64_t to = std::min(end, start + len) - start;
    uint8_t* src = cipher + (i - first) * layout_.stride();
    if (from == 0 && to == len) {
      if (int rc = ReadChunk(i, len, src, out.data() + (start - offset)); rc < 0) return rc;
    } else {
      uint8_t* plain = Scratch(PlainScratch(), chunk);
      if (int rc = ReadChunk(i, len, src, plain); rc < 0) return rc;
      std::memcpy(out.data() + (start + from - offset), plain + from, to - from);
    }
  }
  PrefetchIfSequential(offset, end, cipher_len);
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

int CipherFile::WriteState(uint64_t size, uint32_t flags, bool durable) {
  FileState next{disk_state_.counter + 1, size, flags};
  StateSlotBytes slot = SealState(keys_.state, fixed_.file_id, next);
  // Alternate slots: a torn write leaves the previous record intact in the other slot.
  if (int rc = PwriteAll(slot.data(), slot.size(), kStateSlotOffset[(next.counter - 1) % 2]);
      rc < 0) {
    return rc;
  }
  if (durable && ::fdatasync(fd_.get()) != 0) return -errno;
  disk_state_ = next;
  return 0;
}

int CipherFile::PrepareSizeChange(bool creates_holes) {
  uint32_t flags = disk_state_.flags & ~kStateSealed;
  if (creates_holes) flags |= kStateSparse;
  if (flags == disk_state_.flags) return 0;  // already unsealed (and sparse if needed)
  // Durable before the length changes: a crash can never leave a sealed record that
  // disagrees with the file's length, nor holes in a file not marked sparse.
  return WriteState(size_, flags, /*durable=*/true);
}

int CipherFile::RewriteChunk(uint64_t index, uint64_t old_len, uint64_t new_len) {
  const uint64_t chunk = fixed_.chunk_size;
  uint8_t* plain = Scratch(PlainScratch(), chunk);
  uint8_t* cipher = Scratch(CipherScratch(), layout_.stride());
  if (old_len > 0) {
    if (int rc = PreadAll(cipher, old_len + kChunkOverhead, layout_.ChunkOffset(index)); rc < 0) {
      return rc;
    }
    if (int rc = ReadChunk(index, old_len, cipher, plain); rc < 0) return rc;
  }
  if (new_len > old_len) std::memset(plain + old_len, 0, new_len - old_len);
  SealChunk(index, plain, new_len, cipher);
  return PwriteAll(cipher, new_len + kChunkOverhead, layout_.ChunkOffset(index));
}

int CipherFile::ExtendTo(uint64_t new_size) {
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t old_rem = size_ % chunk;
  const uint64_t last = size_ / chunk;
  const uint64_t rounded_old = old_rem ? (last + 1) * chunk : size_;
  const uint64_t new_rem = new_size % chunk;
  const bool creates_holes = new_size - new_rem > rounded_old;
  if (int rc = PrepareSizeChange(creates_holes); rc < 0) return rc;
  if (old_rem != 0) {
    // The old partial last chunk grows (zero-padded), within itself or to a full chunk.
    uint64_t grown = std::min(new_size, (last + 1) * chunk) - last * chunk;
    if (int rc = RewriteChunk(last, old_rem, grown); rc < 0) return rc;
  }
  if (new_rem != 0 && new_size > rounded_old) {
    // A new partial last chunk is written (encrypted zeros); full chunks before it are holes.
    if (int rc = RewriteChunk(new_size / chunk, 0, new_rem); rc < 0) return rc;
  } else if (::ftruncate(fd_.get(), static_cast<off_t>(layout_.CipherSize(new_size))) != 0) {
    return -errno;
  }
  size_ = new_size;
  return 0;
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
      (static_cast<uint64_t>(std::numeric_limits<off_t>::max()) - kHeaderSize) / layout_.stride() *
      chunk;
  if (offset > max_size || in.size() > max_size - offset) return -EFBIG;
  const uint64_t end = offset + in.size();
  if (damaged_from_ != kNoDamage && end > damaged_from_) {
    LogDamage(damaged_from_ / chunk, "refusing to write into a damaged file's tail");
    return -EIO;
  }
  modifications_.fetch_add(1);
  const uint64_t aligned_start = offset / chunk * chunk;
  if (aligned_start > size_) {
    if (int rc = ExtendTo(aligned_start); rc < 0) return rc;
  }
  const uint64_t new_size = std::max(size_, end);
  if (new_size != size_) {
    if (int rc = PrepareSizeChange(false); rc < 0) return rc;
  }
  const uint64_t first = offset / chunk;
  const uint64_t last = (end - 1) / chunk;
  const uint64_t last_len = std::min(chunk, new_size - last * chunk);
  const size_t cipher_len = (last - first) * layout_.stride() + last_len + kChunkOverhead;
  // Old partial chunks are read into the plaintext scratch; the output goes to its own buffer.
  thread_local std::vector<uint8_t> output;
  uint8_t* out = Scratch(output, cipher_len);
  for (uint64_t i = first; i <= last; ++i) {
    const uint64_t start = i * chunk;
    const uint64_t len = std::min(chunk, new_size - start);
    const uint64_t from = std::max(offset, start);
    const uint64_t to = std::min(end, start + len);
    const uint8_t* src;
    if (from == start && to == start + len) {
      src = in.data() + (start - offset);  // chunk fully overwritten: no read needed
    } else {
      uint8_t* plain = Scratch(PlainScratch(), chunk);
      const uint64_t old_len = size_ > start ? std::min(chunk, size_ - start) : 0;
      if (old_len > 0) {
        uint8_t* old = Scratch(CipherScratch(), layout_.stride());
        if (int rc = PreadAll(old, old_len + kChunkOverhead, layout_.ChunkOffset(i)); rc < 0) {
          return rc;
        }
        if (int rc = ReadChunk(i, old_len, old, plain); rc < 0) return rc;
      }
      if (len > old_len) std::memset(plain + old_len, 0, len - old_len);
      std::memcpy(plain + (from - start), in.data() + (from - offset), to - from);
      src = plain;
    }
    SealChunk(i, src, len, out + (i - first) * layout_.stride());
  }
  if (int rc = PwriteAll(out, cipher_len, layout_.ChunkOffset(first)); rc < 0) {
    struct stat st;  // a partial write (ENOSPC): re-derive the size from what is on disk
    if (::fstat(fd_.get(), &st) == 0) size_ = layout_.ReportedPlainSize(st.st_size);
    return rc;
  }
  size_ = new_size;
  return static_cast<ssize_t>(in.size());
}

int CipherFile::Truncate(uint64_t new_size) {
  std::unique_lock lock(mu_);
  if (new_size == size_) return 0;
  modifications_.fetch_add(1);
  if (new_size > size_) {
    if (damaged_from_ != kNoDamage) return -EIO;
    return ExtendTo(new_size);
  }
  if (int rc = PrepareSizeChange(false); rc < 0) return rc;
  const uint64_t chunk = fixed_.chunk_size;
  const uint64_t rem = new_size % chunk;
  if (rem != 0) {
    const uint64_t index = new_size / chunk;
    if (int rc = RewriteChunk(index, std::min(chunk, size_ - index * chunk), rem); rc < 0) {
      return rc;
    }
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(layout_.CipherSize(new_size))) != 0) {
    return -errno;
  }
  size_ = new_size;
  if (new_size <= damaged_from_) damaged_from_ = kNoDamage;  // the damaged tail is gone
  if (new_size == 0 && disk_state_.sparse()) {
    // No chunks, so no holes: clear the sparse flag, once the empty length is durable.
    if (::fdatasync(fd_.get()) != 0) return -errno;
    return WriteState(0, disk_state_.flags & ~kStateSparse, /*durable=*/false);
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
  return damaged_from_ == kNoDamage && (!disk_state_.sealed() || disk_state_.size != size_);
}

int CipherFile::Sync() {
  std::unique_lock lock(mu_);
  if (::fdatasync(fd_.get()) != 0) return -errno;
  if (damaged_from_ != kNoDamage || (disk_state_.sealed() && disk_state_.size == size_)) return 0;
  // The data is durable; now record the exact size, durably.
  return WriteState(size_, disk_state_.flags | kStateSealed, /*durable=*/true);
}

int CipherFile::SealIfUnchanged(uint64_t count) {
  std::unique_lock lock(mu_);
  if (modifications_.load() != count || damaged_from_ != kNoDamage) return 0;
  if (disk_state_.sealed() && disk_state_.size == size_) return 0;
  return WriteState(size_, disk_state_.flags | kStateSealed, /*durable=*/false);
}

}  // namespace envelopefs
