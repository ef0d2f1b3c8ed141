// CanonicalBytes — the unambiguous byte strings that the keyring MAC covers (the keyring's
// contents and the config's authenticated fields; see envelopefs-format(5), VOLUME FILES).
// Each field is a 32-bit little-endian length followed by its bytes; integers are 8-byte
// little-endian fields. Pure, thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "envelopefs/encoding.h"

namespace envelopefs {

inline void AppendField(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  const size_t at = out.size();
  out.resize(at + 4 + bytes.size());
  StoreLe32(out.data() + at, static_cast<uint32_t>(bytes.size()));
  if (!bytes.empty()) std::memcpy(out.data() + at + 4, bytes.data(), bytes.size());
}

inline void AppendU64(std::vector<uint8_t>& out, uint64_t v) {
  uint8_t b[8];
  StoreLe64(b, v);
  AppendField(out, b);
}

}  // namespace envelopefs
