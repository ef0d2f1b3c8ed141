// CipherFile — plaintext read/write/truncate over one open cipher file. The data path.
//
// Holds what an open file needs for its whole lifetime: the backing fd, the parsed header and
// the per-file keys derived from the DEK (unwrapped once, at open). Every chunk read is
// authenticated; a chunk that fails reads as -EIO and is logged with the file and chunk index.
// Reads take a shared lock and writes an exclusive one, so any number of threads may use one
// CipherFile concurrently. Knows nothing about FUSE.
//
// State slots (see file_format.h): before the first operation that changes the cipher file's
// length, a durable "unsealed" record is written; Seal() records the exact size again. A sealed
// record whose size disagrees with the cipher file's length means the file was cut or extended
// behind our back: the affected tail reads as -EIO. The "sparse" flag is set durably before the
// first hole is created; without it, an all-zero chunk is a tampered chunk, not a hole.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

#include "envelopefs/file_header.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

class Volume;

class CipherFile {
 public:
  // Writes a fresh header (random file id and DEK, wrapped under the active KEK) into the new,
  // empty file `fd`. Throws Error.
  static std::shared_ptr<CipherFile> Create(UniqueFd fd, const Volume& volume,
                                            std::string display_name);
  // Opens an existing cipher file: parses the header, unwraps the DEK (either key slot),
  // reads the state. Throws Error(kFormat / kAuthentication / kKeyUnavailable / kIo).
  static std::shared_ptr<CipherFile> Open(UniqueFd fd, const Volume& volume,
                                          std::string display_name);

  // All return bytes transferred or 0, or -errno (-EIO for authentication failures).
  ssize_t Read(std::span<uint8_t> out, uint64_t offset);
  ssize_t Write(std::span<const uint8_t> in, uint64_t offset);
  // Writes at the current end of the file, atomically with respect to other writers (O_APPEND).
  ssize_t Append(std::span<const uint8_t> in);
  int Truncate(uint64_t size);
  // fallocate(2) modes 0 and FALLOC_FL_KEEP_SIZE; others -EOPNOTSUPP.
  int Allocate(int mode, uint64_t offset, uint64_t length);
  // fsync/fdatasync: makes data durable, then records the sealed size durably.
  int Sync();

  // Deferred sealing after close: ModificationCount() before a syncfs(2) of the backing file
  // system, then SealIfUnchanged(count) after it writes the sealed record (no extra flush:
  // the data it covers is already durable) unless the file changed in between.
  bool NeedsSeal() const;
  uint64_t ModificationCount() const { return modifications_.load(); }
  int SealIfUnchanged(uint64_t count);

  uint64_t size() const;
  int fd() const { return fd_.get(); }
  const FixedHeader& fixed() const { return fixed_; }
  const std::string& display_name() const { return name_; }
  void set_display_name(std::string name);

 private:
  CipherFile(UniqueFd fd, const FixedHeader& fixed, FileKeys keys, std::string name);

  // Helpers below require mu_ held exclusively (or shared for reads).
  ssize_t WriteLocked(std::span<const uint8_t> in, uint64_t offset);
  int ReadChunk(uint64_t index, uint64_t plain_len, uint8_t* cipher, uint8_t* plain) const;
  void SealChunk(uint64_t index, const uint8_t* plain, uint64_t plain_len, uint8_t* cipher) const;
  int WriteState(uint64_t size, uint32_t flags, bool durable);
  int PrepareSizeChange(bool creates_holes);
  int ExtendTo(uint64_t new_size);
  int RewriteChunk(uint64_t index, uint64_t old_len, uint64_t new_len);
  int PwriteAll(const uint8_t* data, size_t len, uint64_t offset) const;
  int PreadAll(uint8_t* data, size_t len, uint64_t offset) const;
  void LogDamage(uint64_t chunk, const char* what) const;
  std::string CurrentName() const;
  void PrefetchIfSequential(uint64_t offset, uint64_t end, uint64_t cipher_len)
      const;  // for log lines: the path of fd_, else name_

  UniqueFd fd_;
  const FixedHeader fixed_;
  const ChunkLayout layout_;
  const FileKeys keys_;
  std::string name_;  // for log lines; guarded by name_mu_
  mutable std::shared_mutex name_mu_;

  mutable std::shared_mutex mu_;
  uint64_t size_ = 0;              // plaintext size; the cipher file length always matches it
  FileState disk_state_;           // the newest state record on disk
  uint64_t damaged_from_ = ~0ull;  // plaintext offset from which reads fail (cut/extended file)
  std::atomic<uint64_t> modifications_{0};
  mutable std::atomic<uint64_t> last_read_end_{0};  // for sequential-read prefetch
};

}  // namespace envelopefs
