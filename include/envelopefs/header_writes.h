// HeaderWrites — the order in which a cipher file's header is rewritten in place, so that a
// write torn at any byte leaves a header that opens as the one before or the one after.
//
// A rewrite is a short sequence of writes (offset, bytes) applied in order. The model is the
// one of envelopefs-format(5), "Torn writes": a crash (or a power loss on a device that does
// not write a 512-byte sector atomically) may leave any prefix of the sequence's bytes on
// disk, and nothing after it. The readers (SelectState, OpenHeader) accept exactly what such a
// prefix leaves: one state slot that does not authenticate beside a whole one, and a key slot
// holding a new data key beside state records still of the old one. CipherFile executes these
// plans as they are (one pwrite per HeaderWrite); the tests enumerate every prefix of them.
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
};

// New state records after the current record `current` (counter c): `next` (size, flags,
// digest; its counter is ignored) as record c+1 alone or, when `pair`, as records c+1 and
// c+2 in both slots. Record c+1 goes to the slot of record c-1, the older one, and is written
// first: a tear in the first slot written leaves record c, a tear in the second leaves c+1.
// The records are numbered here; the last one written is `*written`.
std::vector<HeaderWrite> PlanStateWrites(uint16_t version, const SecureBytes& state_key,
                                         const FileId& file_id, const FileState& current,
                                         const FileState& next, bool pair, FileState* written);

// A truncation to zero that replaces the data key (CipherFile::Rekey): the file is already
// empty and unsealed under record `current` of the old key; `fresh` is the new header
// (BuildHeader, same fixed part). The new records are the empty state numbered c+1 and c+2
// under the new key (`*written` is the last). Order: one key slot of the new key; the state
// slot of record c-1, then the one of record c; the other key slot. If the fixed part changes
// (a version-1 file becomes version 2) there is no such order: the whole header is one write,
// and only a device that writes a 512-byte sector atomically keeps it whole.
std::vector<HeaderWrite> PlanRekeyWrites(const FixedHeader& old_fixed, const HeaderBytes& fresh,
                                         const SecureBytes& fresh_state_key,
                                         const FileState& current, FileState* written);

// `header` with `writes` applied, the last one only up to `prefix` bytes of the whole sequence
// (for tests and the fuzzer: what a tear leaves).
std::vector<uint8_t> ApplyPrefix(std::vector<uint8_t> header,
                                 const std::vector<HeaderWrite>& writes, size_t prefix);
size_t TotalBytes(const std::vector<HeaderWrite>& writes);

}  // namespace envelopefs
