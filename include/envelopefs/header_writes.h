// HeaderWrites — the order in which a cipher file's header is rewritten in place, so that a
// write torn at any byte leaves a header that opens as the one before or the one after.
//
// A rewrite is a short sequence of writes (offset, bytes), applied in order, with a flush
// (fdatasync) after each write marked `flush_after`. Between two flushes the writes go to
// ascending offsets, so that a tear leaves the same bytes whichever way it happens: a crash
// between two pwrites leaves a prefix of the sequence, and a device that tears a sector on
// power loss leaves its lower addresses new and its higher ones old, which is again a prefix
// (man envelopefs-format(5), "Torn writes"). The readers (SelectState, OpenHeader) accept
// exactly what such a prefix leaves: one state slot that does not authenticate beside a whole
// one, and a key slot holding a new data key beside state records still of the old one.
// CipherFile executes these plans as they are; the tests enumerate every prefix of them.
// Pure; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "envelopefs/file_header.h"

namespace envelopefs {

struct HeaderWrite {
  size_t offset = 0;
  std::vector<uint8_t> bytes;
  bool flush_after = false;  // made durable before the next write is issued
};

// A new state `next` (size, flags, digest; its counter is ignored) after the current record
// `current` (counter c). Every state is written as two consecutive records holding it, the
// odd-numbered one in slot 0 and the even one in slot 1, in one write at ascending offsets:
// so both slots always hold the same state, and a tear leaves one of them whole. The current
// record is then always even (in slot 1); a file whose current record is odd (written by
// envelopefs 0.2 and earlier, which wrote an unsealed record alone) first gets record c+1 in
// slot 1, flushed, then records c+2 and c+3. `*written` is the last record written.
std::vector<HeaderWrite> PlanStateWrites(uint16_t version, const SecureBytes& state_key,
                                         const FileId& file_id, const FileState& current,
                                         const FileState& next, FileState* written);

// A truncation to zero that replaces the data key (CipherFile::Rekey): the file is already
// empty and its current record (even, see above) unsealed under the old key; `fresh` is the
// new header (BuildHeader: records 1 and 2 of the empty state under the new key). Order: key
// slot `first_key_slot` and the two state slots (ascending), flushed, then the other key slot.
// The caller passes as `first_key_slot` a key slot that does not open the data key in use, if
// there is one. If the fixed part changes (a version-1 file becomes version 2) there is no such
// order: the whole header is one write, and only a device that writes a 512-byte sector
// atomically keeps it whole.
std::vector<HeaderWrite> PlanRekeyWrites(const FixedHeader& old_fixed, const HeaderBytes& fresh,
                                         int first_key_slot);

// `header` with the first `prefix` bytes of `writes` applied (what a tear leaves; for tests).
std::vector<uint8_t> ApplyPrefix(std::vector<uint8_t> header,
                                 const std::vector<HeaderWrite>& writes, size_t prefix);
size_t TotalBytes(const std::vector<HeaderWrite>& writes);

}  // namespace envelopefs
