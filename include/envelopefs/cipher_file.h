// CipherFile — plaintext read/write/truncate over one open cipher file. The data path.
//
// Holds what an open file needs for its whole lifetime: the backing fd, the parsed header, the
// per-file keys derived from the DEK (unwrapped once, at open) and, for format-2 files, the tag
// of every chunk (the chunk index). Every chunk read is authenticated; a chunk that fails reads
// as -EIO and is reported (the file and the chunk) to the DamageReporter the file was opened
// with. Reads take a shared lock and writes an
// exclusive one, so any number of threads may use one CipherFile concurrently. Knows nothing
// about FUSE.
//
// Sealing (see file_format.h): before the first change of a sealed file (format 2: any change;
// format 1: a change of length) a durable "unsealed" record is written; Seal records the exact
// size, flags and (format 2) the digest of the chunk index again. Open refuses a sealed file
// whose length, index or chunks disagree with its record: a closed file reads back exactly as
// last written, or not at all. Format 2 also compares each chunk's tag with the index on every
// read, so a chunk replaced by an older copy of itself reads as -EIO even while the file is
// open. The "sparse" flag is set durably before the first hole is created; without it, an
// all-zero chunk is a tampered chunk, not a hole. Truncating a non-empty file to zero gives it a
// fresh DEK (and the current format version): nothing written before can be spliced back.
//
// Errors: Create and Open throw Error(kind); the data-path methods return -errno (never throw).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/chunk_index.h"
#include "envelopefs/cipher_header.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/file_header.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

class Volume;

struct NewHeader;  // cipher_file_internal.h

class CipherFile {
 public:
  // Writes a fresh header (random file id and DEK, wrapped under the active KEK) into the new,
  // empty file `fd`. Throws Error. `volume` and `reporter` must outlive the file; damage found
  // later (a chunk that fails to read) goes to `reporter`.
  static std::shared_ptr<CipherFile> Create(UniqueFd fd, const Volume& volume,
                                            std::string display_name, DamageReporter& reporter);
  // Opens an existing cipher file: reads the header, unwraps the DEK, selects the state and
  // (format 2) loads and checks the chunk index. `volume` and `reporter` must outlive the file.
  // Messages start with `display_name` (Named): a caller that shows the name itself passes "".
  // Throws Error(kFormat / kAuthentication / kKeyUnavailable / kIo); tampering is also reported
  // to `reporter` (with the chunk where it can be told), and an unsealed file is reported as
  // such (DamageReporter::Unsealed).
  static std::shared_ptr<CipherFile> Open(UniqueFd fd, const Volume& volume,
                                          std::string display_name, DamageReporter& reporter);

  // All return bytes transferred or 0, or -errno (-EIO for authentication failures).
  ssize_t Read(std::span<uint8_t> out, uint64_t offset);
  ssize_t Write(std::span<const uint8_t> in, uint64_t offset);
  // Writes at the current end of the file, atomically with respect to other writers (O_APPEND).
  ssize_t Append(std::span<const uint8_t> in);
  int Truncate(uint64_t size);
  // fallocate(2) modes 0 and FALLOC_FL_KEEP_SIZE; others -EOPNOTSUPP.
  int Allocate(int mode, uint64_t offset, uint64_t length);
  // fsync/fdatasync: makes data durable, then records the sealed state durably.
  int Sync();

  // Deferred sealing after close: ModificationCount() before the file's data is flushed
  // (fdatasync), then SealIfUnchanged(count) after it writes the sealed record (no extra flush:
  // the data it covers is already durable) unless the file changed in between. Only a file
  // changed through this object needs sealing: a file left unsealed by a crash stays so (and
  // verify says so) until it is written again.
  bool NeedsSeal() const;
  uint64_t ModificationCount() const { return modifications_.load(); }
  int SealIfUnchanged(uint64_t count);

  // Sealing rewrites the header, not the contents: the modification time is put back after it
  // and the change time to show is recorded (KeptTimes, shown_ctime.h). A change right after a
  // seal, while it could be mistaken for the seal's own, first removes that record.
  // utimensat(2) of the file (times as for futimens), ordered with sealing, which keeps the
  // modification time it finds.
  int SetTimes(const struct timespec times[2]);

  uint64_t size() const;
  int fd() const { return fd_.get(); }
  uint16_t format_version() const;
  FileId file_id() const { return file_id_; }  // never changes for the life of the file
  bool sealed() const;                         // the on-disk state is sealed
  const std::string& display_name() const { return name_; }
  void set_display_name(std::string name);

 private:
  CipherFile(UniqueFd fd, const Volume& volume, DamageReporter& reporter, const FixedHeader& fixed,
             FileKeys keys, uint64_t key_generation, std::string name);

  bool indexed() const { return layout_.indexed; }
  // Helpers below require mu_ held exclusively (or shared for reads).
  void LoadIndex(bool sealed, bool writable);
  // After a failed index check: the first chunk that fails on its own, if any.
  std::optional<Damage> LocalizeDamage();
  ssize_t WriteLocked(std::span<const uint8_t> in, uint64_t offset);
  // Decrypts chunk `index` stored at `cipher` into `plain`; what is wrong with it, or nullptr.
  const char* ChunkProblem(uint64_t index, uint64_t plain_len, const uint8_t* cipher,
                           uint8_t* plain) const;
  int ReadChunk(uint64_t index, uint64_t plain_len, const uint8_t* cipher, uint8_t* plain) const;
  void SealChunk(uint64_t index, const uint8_t* plain, uint64_t plain_len, uint8_t* cipher);
  int ReadOldChunk(uint64_t index, uint64_t old_len, uint8_t* plain);
  int WriteState(uint64_t size, uint32_t flags, bool sealed, bool durable);
  // Writes the sealed record of the current state, keeping the modification time.
  int Seal(bool durable);
  // `take_header_lock` false: the caller holds the header lock already (Rekey).
  int PrepareModify(bool changes_size, bool creates_holes, bool take_header_lock = true);
  void SettleSeal();  // before a change: ForgetShownCtime while before settle_until_
  int ExtendTo(uint64_t new_size);
  // Seals `len` bytes of `plain` as chunk `index` and writes it in place.
  int WriteChunk(uint64_t index, const uint8_t* plain, uint64_t len);
  // After a change failed part-way: size_, the cipher file's length and the tags of chunks
  // [first, last] are made to agree with the disk again, and a last chunk that the change
  // rewrote in place to grow is put back from its old plaintext.
  struct ChunkToRestore {
    uint64_t index;
    const uint8_t* plain;
    uint64_t len;
  };
  void RecoverFromFailedChange(uint64_t first, uint64_t last,
                               const std::optional<ChunkToRestore>& restore = std::nullopt);
  int Rekey();
  int AdoptHeaderAfterFailedRekey(NewHeader& fresh, int rc);
  // Index blocks (format 2) after chunks [first, last] changed and the chunk count went from
  // `old_count` to the current one; blocks inside [buffer_lo, buffer_hi) were already written.
  int WriteIndex(uint64_t first, uint64_t last, uint64_t old_count, uint64_t buffer_lo,
                 uint64_t buffer_hi);
  // Calls visit(lo, hi) for each stretch of [from, to) of the cipher file that may hold data
  // (SEEK_DATA/SEEK_HOLE; the whole range where the file system cannot tell).
  void ForEachDataRegion(uint64_t from, uint64_t to,
                         const std::function<void(uint64_t, uint64_t)>& visit) const;
  void ReadInlineTags(uint64_t first, uint64_t end);
  int PwriteAll(const uint8_t* data, size_t len, uint64_t offset) const;
  int PreadAll(uint8_t* data, size_t len, uint64_t offset) const;
  // Reports chunk `chunk` of this file as damaged (`what` is wrong with it).
  void ReportChunkDamage(uint64_t chunk, const std::string& what) const;
  std::string CurrentName() const;  // for log lines: the path of fd_, else name_
  void PrefetchIfSequential(uint64_t offset, uint64_t end, uint64_t cipher_len) const;

  UniqueFd fd_;
  const Volume& volume_;
  DamageReporter& reporter_;
  const FileId file_id_;
  std::string name_;  // for log lines; guarded by name_mu_
  mutable std::shared_mutex name_mu_;

  mutable std::shared_mutex mu_;
  FixedHeader fixed_;        // changes only when Rekey() moves a file to the current version
  ChunkLayout layout_;       // likewise
  FileKeys keys_;            // likewise (a fresh DEK)
  uint64_t key_generation_;  // the higher generation of the key slots that open
  bool slot_opens_[2] = {true, true};  // which key slots open keys_' DEK
  bool broken_ = false;   // the header opens with no key after a failed Rekey: nothing is written
  uint64_t size_ = 0;     // plaintext size; the cipher file length matches it (see
                          // RecoverFromFailedChange for the failure paths)
  FileState disk_state_;  // the newest state record on disk
  ChunkIndex tags_;       // format 2: the tag of every chunk (zero for holes)
  bool index_stale_ = false;  // index blocks on disk may disagree with tags_ (a failed write)
  // A state write failed part-way: the disk may hold a newer record than disk_state_ (a sealed
  // one), so the next change writes its unsealed record again rather than trust disk_state_.
  bool state_unsure_ = false;
  bool dirty_ = false;  // changed through this object since it was opened
  std::atomic<uint64_t> modifications_{0};
  // Until when a change would be mistaken for the last seal's (RecordShownCtime).
  std::chrono::system_clock::time_point settle_until_{};
  mutable std::atomic<uint64_t> last_read_end_{0};  // for sequential-read prefetch
};

}  // namespace envelopefs
