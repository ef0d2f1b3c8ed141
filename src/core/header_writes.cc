// HeaderWrites — see header_writes.h.
#include "envelopefs/header_writes.h"

#include <algorithm>
#include <cstring>

namespace envelopefs {

using namespace format;

namespace {

std::vector<uint8_t> StateRecord(uint16_t version, const SecureBytes& state_key,
                                 const FileId& file_id, const FileState& record) {
  const StateSlotBytes bytes = SealState(version, state_key, file_id, record);
  return std::vector<uint8_t>(bytes.begin(), bytes.begin() + StateSlotSize(version));
}

std::vector<uint8_t> Range(const HeaderBytes& h, size_t offset, size_t size) {
  return std::vector<uint8_t>(h.begin() + offset, h.begin() + offset + size);
}

}  // namespace

std::vector<HeaderWrite> PlanStateWrites(uint16_t version, const SecureBytes& state_key,
                                         const FileId& file_id, const FileState& current,
                                         const FileState& next, FileState* written) {
  std::vector<HeaderWrite> writes;
  FileState record = next;
  uint64_t counter = current.counter + 1;
  if (counter % 2 == 0) {
    // The current record is odd, in slot 0, beside an older one that may hold another state:
    // the new state goes over the older one first, and is durable before slot 0 is touched.
    record.counter = counter++;
    writes.push_back({StateSlotOffset(version, 1), StateRecord(version, state_key, file_id, record),
                      /*flush_after=*/true});
  }
  HeaderWrite pair{StateSlotOffset(version, 0), {}, false};
  for (int r = 0; r < 2; ++r) {
    record.counter = counter++;
    std::vector<uint8_t> bytes = StateRecord(version, state_key, file_id, record);
    pair.bytes.insert(pair.bytes.end(), bytes.begin(), bytes.end());
  }
  writes.push_back(std::move(pair));
  *written = record;
  return writes;
}

std::vector<HeaderWrite> PlanRekeyWrites(const FixedHeader& old_fixed, const HeaderBytes& fresh,
                                         int first_key_slot) {
  const FixedHeader fixed = ParseFixedHeader(fresh);
  if (fixed.version != old_fixed.version || fixed.cipher != old_fixed.cipher ||
      fixed.chunk_size != old_fixed.chunk_size || fixed.file_id != old_fixed.file_id) {
    return {HeaderWrite{0, Range(fresh, 0, kHeaderSize), false}};
  }
  const int first = first_key_slot == 1 ? 1 : 0;
  const size_t states = StateSlotOffset(fixed.version, 0);
  const size_t states_size = 2 * StateSlotSize(fixed.version);
  return {
      HeaderWrite{kKeySlotOffset[first], Range(fresh, kKeySlotOffset[first], kKeySlotSize), false},
      HeaderWrite{states, Range(fresh, states, states_size), /*flush_after=*/true},
      HeaderWrite{kKeySlotOffset[1 - first], Range(fresh, kKeySlotOffset[1 - first], kKeySlotSize),
                  false},
  };
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
