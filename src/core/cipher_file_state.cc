// CipherFile, state records and sealing: the unsealed record before a change, the chunk index
// blocks on disk, recovery from a change that failed part-way, and the sealed record after
// close or fsync (keeping the modification time). See cipher_file.h.
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
#include <optional>
#include <vector>

#include "cipher_file_internal.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/header_writes.h"
#include "envelopefs/log.h"
#include "envelopefs/volume.h"
#include "header_lock.h"
#include "kept_times.h"

namespace envelopefs {

using namespace format;

int CipherFile::WriteState(uint64_t size, uint32_t flags, bool sealed, bool durable) {
  // Every state goes into both slots (two consecutive records), so that no slot holds an
  // older record that could be replayed alone, and a torn write leaves one whole
  // (header_writes.h).
  if (broken_) return -EIO;
  if (sealed && index_stale_) {
    // A failed write may have left index blocks that disagree with the tags: they are
    // rewritten, durably, before a digest a later open must reproduce from them is sealed.
    if (int rc = WriteIndex(1, 0, 0, 0, 0); rc < 0) return rc;
    if (::fdatasync(fd_.get()) != 0) return -errno;
    index_stale_ = false;
  }
  FileState next{0, size, sealed ? flags | kStateSealed : flags, {}};
  if (sealed && indexed()) next.digest = tags_.Digest();
  FileState written;
  state_unsure_ = true;  // until every write below went through
  for (const HeaderWrite& w :
       PlanStateWrites(fixed_.version, keys_.state, fixed_.file_id, disk_state_, next, &written)) {
    if (int rc = PwriteAll(w.bytes.data(), w.bytes.size(), w.offset); rc < 0) return rc;
    if (w.flush_after && ::fdatasync(fd_.get()) != 0) return -errno;
  }
  if (durable && ::fdatasync(fd_.get()) != 0) return -errno;
  disk_state_ = written;
  state_unsure_ = false;
  return 0;
}

void CipherFile::SettleSeal() {
  if (settle_until_ == std::chrono::system_clock::time_point{}) return;
  if (std::chrono::system_clock::now() < settle_until_) ForgetShownCtime(fd_.get());
  settle_until_ = {};
}

int CipherFile::PrepareModify(bool changes_size, bool creates_holes, bool take_header_lock) {
  SettleSeal();
  // Format 1 keeps no index digest: an overwrite in place leaves the sealed record valid.
  if (!indexed() && !changes_size && !creates_holes) return 0;
  uint32_t flags = disk_state_.flags & ~kStateSealed;
  if (creates_holes) flags |= kStateSparse;
  if (broken_) return -EIO;
  // Already unsealed (and sparse if needed), in both slots (an odd current record was written
  // alone by an older version, beside an older state: header_writes.h).
  if (flags == disk_state_.flags && disk_state_.counter % 2 == 0 && !state_unsure_) return 0;
  // Durable before anything changes: a crash can never leave a sealed record that disagrees
  // with the file's chunks or length, nor holes in a file not marked sparse. Under the header
  // lock: `envelopectl rewrap` keeps a file's times only if, under that lock, the file was sealed
  // and stayed so (rewrap.cc), which this unsealing write, made before any data write, ends.
  std::optional<HeaderLock> lock;
  if (take_header_lock) {
    lock.emplace(fd_.get());
    // After 5 s: a write cannot wait on anyone who can open the file. What is lost is only
    // rewrap's proof that no write began (it gives up on a file it held that long: rewrap.cc).
    lock->WarnIfBusy(CurrentName());
  }
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
  KeptTimes kept(fd_.get());
  int rc =
      kept.Write([&] { return WriteState(size_, disk_state_.flags, /*sealed=*/true, durable); });
  if (rc < 0) return rc;
  dirty_ = false;
  if (auto settle = kept.Restore()) settle_until_ = *settle;
  return 0;
}

int CipherFile::SetTimes(const struct timespec times[2]) {
  std::unique_lock lock(mu_);
  SettleSeal();
  return ::futimens(fd_.get(), times) == 0 ? 0 : -errno;
}

}  // namespace envelopefs
