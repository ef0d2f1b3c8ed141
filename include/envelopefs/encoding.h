// Byte encodings: little-endian integers, hex and unpadded base64url (RFC 4648 section 5).
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace envelopefs {

inline void StoreLe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void StoreLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t LoadLe16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t LoadLe32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string ToHex(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> FromHex(std::string_view hex);
std::string ToBase64Url(std::span<const uint8_t> bytes);
std::optional<std::vector<uint8_t>> FromBase64Url(std::string_view text);

// `bytes` (a name, a path) made safe for a log line or a JSON string: valid UTF-8 that is not a
// control character stays as it is; every other byte (invalid UTF-8, C0 and C1 controls, DEL)
// and the backslash become "\xHH". The result is valid UTF-8 and never holds a line break, and
// distinct inputs give distinct outputs.
std::string EscapeName(std::string_view bytes);

// True if every byte of `bytes` is zero (holes, empty slots, zeroed tags).
inline bool IsAllZero(std::span<const uint8_t> bytes) {
  uint8_t acc = 0;
  for (uint8_t b : bytes) acc |= b;
  return acc == 0;
}

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace envelopefs
