// HeaderWrites — see header_writes.h.
#include "envelopefs/header_writes.h"

#include <algorithm>
#include <cstring>

#include "envelopefs/error.h"

namespace envelopefs {

using namespace format;

namespace {

HeaderWrite StateRecordWrite(uint16_t version, const SecureBytes& state_key, const FileId& file_id,
                             const FileState& record) {
  const StateSlotBytes bytes = SealState(version, state_key, file_id, record);
  const size_t size = StateSlotSize(version);
  return HeaderWrite{StateSlotOffset(version, StateSlotFor(record.counter)),
                     std::vector<uint8_t>(bytes.begin(), bytes.begin() + size)};
}

// Joins writes that follow one another on disk into one (the same bytes in the same order).
std::vector<HeaderWrite> Coalesced(std::vector<HeaderWrite> writes) {
  std::vector<HeaderWrite> out;
  for (HeaderWrite& w : writes) {
    if (!out.empty() && out.back().offset + out.back().bytes.size() == w.offset) {
      out.back().bytes.insert(out.back().bytes.end(), w.bytes.begin(), w.bytes.end());
    } else {
      out.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace

std::vector<HeaderWrite> PlanStateWrites(uint16_t version, const SecureBytes& state_key,
                                         const FileId& file_id, const FileState& current,
                                         const FileState& next, bool pair, FileState* written) {
  std::vector<HeaderWrite> writes;
  FileState record = next;
  for (int r = 0; r < (pair ? 2 : 1); ++r) {
    record.counter = current.counter + 1 + static_cast<uint64_t>(r);
    writes.push_back(StateRecordWrite(version, state_key, file_id, record));
  }
  *written = record;
  return Coalesced(std::move(writes));
}

std::vector<HeaderWrite> PlanRekeyWrites(const FixedHeader& old_fixed, const HeaderBytes& fresh,
                                         const SecureBytes& fresh_state_key,
                                         const FileState& current, FileState* written) {
  const FixedHeader fixed = ParseFixedHeader(fresh);
  if (fixed.version != old_fixed.version || fixed.cipher != old_fixed.cipher ||
      fixed.chunk_size != old_fixed.chunk_size || fixed.file_id != old_fixed.file_id) {
    *written = EmptyFileState(2);  // BuildHeader's records
    return {HeaderWrite{0, std::vector<uint8_t>(fresh.begin(), fresh.end())}};
  }
  auto key_slot = [&](int slot) {
    return HeaderWrite{kKeySlotOffset[slot],
                       std::vector<uint8_t>(fresh.begin() + kKeySlotOffset[slot],
                                            fresh.begin() + kKeySlotOffset[slot] + kKeySlotSize)};
  };
  std::vector<HeaderWrite> writes;
  writes.push_back(key_slot(0));
  for (uint64_t counter : {current.counter + 1, current.counter + 2}) {
    *written = EmptyFileState(counter);
    writes.push_back(StateRecordWrite(fixed.version, fresh_state_key, fixed.file_id, *written));
  }
  writes.push_back(key_slot(1));
  return writes;  // not coalesced: key slot 0 and the state slots are not adjacent anyway
}

std::vector<uint8_t> ApplyPrefix(std::vector<uint8_t> header,
                                 const std::vector<HeaderWrite>& writes, size_t prefix) {
  for (const HeaderWrite& w : writes) {
    const size_t n = std::min(prefix, w.bytes.size());
    if (header.size() < w.offset + n) header.resize(w.offset + n);
    std::memcpy(header.data() + w.offset, w.bytes.data(), n);
    prefix -= n;
    if (prefix == 0) break;
  }
  return header;
}

size_t TotalBytes(const std::vector<HeaderWrite>& writes) {
  size_t total = 0;
  for (const HeaderWrite& w : writes) total += w.bytes.size();
  return total;
}

}  // namespace envelopefs
