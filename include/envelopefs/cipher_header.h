// CipherHeader — the one place that reads and opens the header of a cipher file.
//
// ReadHeader() reads what anyone may read without a key: the fixed part and both key slots
// (format version, chunk size, file id, the KEK version of each slot), plus the cipher file's
// length. OpenHeader() then unwraps the DEK (the key slot with the higher generation first, the
// other one if it does not open: it survives a torn rewrap), selects the newest state record
// strictly (SelectState) and checks the cipher file's length against it. The daemon
// (CipherFile), rewrap, inspect, verify, audit and decrypt all go through these two functions;
// nothing outside src/core reads the format's byte layout. Thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "envelopefs/error.h"
#include "envelopefs/file_header.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs {

// Where OpenHeader finds KEKs: the volume, or a table copied from it for many threads.
class KekSource {
 public:
  virtual ~KekSource() = default;
  // Copies the unretired KEK (id, version) into `key_out`; false if unknown or retired.
  virtual bool FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const = 0;
};

enum class HeaderStatus {
  kOk,
  kNotEnvelope,  // no envelopefs magic
  kDamaged,      // envelopefs magic (or empty), but the header is short or invalid
  kUnreadable,   // fstat/read failed
};

struct HeaderRead {
  HeaderStatus status = HeaderStatus::kUnreadable;
  std::string reason;  // for every status but kOk
  int error = 0;       // errno, for kUnreadable
  HeaderBytes bytes{};
  FixedHeader fixed;
  KeySlotInfo slots[2];
  uint64_t cipher_size = 0;  // length of the cipher file
  dev_t dev = 0;
  ino_t ino = 0;

  // The key slot with the higher generation (slot 0 on a tie).
  int NewestSlot() const { return slots[1].generation > slots[0].generation ? 1 : 0; }
  std::span<const uint8_t> FixedBytes() const;
  std::span<const uint8_t, format::kKeySlotSize> SlotBytes(int slot) const;
  ChunkLayout layout() const { return ChunkLayout::Of(fixed); }
};

// One fstat and one pread of the header; parses the fixed part and both key slots.
HeaderRead ReadHeader(int fd);

// The plaintext size that stat(2) shows for a closed cipher file of `cipher_size` bytes, from
// its length (which the header authenticates when the file is opened; an impossible length shows
// the whole chunks below it). Up to one group of chunks a length means the same size in every
// format version, so the volume's chunk size (every file of a volume is made with it) answers
// without reading the header; only for a larger file is `header_layout` called, for the layout
// of the file's own header (e.g. HeaderLayout; nullopt or an empty function: the volume's is
// used). As cheap as the caller's `header_layout`: no key, no I/O of its own.
uint64_t ClosedFilePlainSize(uint64_t cipher_size, uint32_t volume_chunk_size,
                             const std::function<std::optional<ChunkLayout>()>& header_layout);
// The chunk layout in the header of cipher file `fd` (ReadHeader: no key), or nullopt if it has
// no valid header (opening the file says why).
std::optional<ChunkLayout> HeaderLayout(int fd);

struct OpenedHeader {
  bool ok = false;
  ErrorKind kind = ErrorKind::kAuthentication;  // when !ok: kKeyUnavailable or kAuthentication
  std::string problem;                          // when !ok: one line, without the file name
  int slot = -1;                                // the key slot that opened
  bool slot_opens[2] = {false, false};          // which key slots unwrap `dek` with a known KEK
  // Both key slots unwrap, to different DEKs (a torn truncation to zero, or tampering): no
  // key slot may be overwritten, or the only copy of a DEK in use could be lost.
  bool slots_disagree = false;
  SecureBytes dek;
  FileState state;  // the newest state record (valid when ok)
  // When ok: empty, or one line on a copy of a header record that did not authenticate and was
  // passed over (a torn write, or tampering); the file opens. See SelectState.
  std::string note;
  std::optional<uint64_t> plain_size;  // from the cipher length; nullopt: impossible length
};

// Unwraps the DEK, selects the state and, when `check_length`, requires the cipher file's
// length to be possible and (for a sealed state) equal to the sealed size.
OpenedHeader OpenHeader(const HeaderRead& header, const KekSource& keks, bool check_length = true);

// Why the cipher length is impossible or disagrees with a sealed `state`; nullopt if fine.
std::optional<std::string> LengthProblem(const HeaderRead& header, const FileState* state);

// Non-secret identities of a DEK, for duplicate detection: with the key, HMAC-SHA256(DEK,
// "envelopefs dek fingerprint v1"); without it, SHA-256 of a key slot's wrapped-DEK record.
Sha256Digest DekFingerprint(const SecureBytes& dek);
Sha256Digest WrappedDekDigest(const HeaderRead& header, int slot);

}  // namespace envelopefs
