// KMIP TTLV — the Tag-Type-Length-Value encoding of KMIP 1.x messages (OASIS KMIP 1.2 spec,
// section 9.1): an encoder, and a strict, bounded decoder for the untrusted bytes a key server
// sends. Knows nothing of TLS or of KMIP operations (kmip_client.h).
//
// The decoder refuses, with Error(kFormat) and one line: a message longer than kMaxTtlvMessage,
// structures nested deeper than kMaxTtlvDepth, more than kMaxTtlvItems items, an unknown type, a
// length that does not fit its type or its enclosing structure, non-zero padding, and trailing
// bytes. Its recursion is bounded by kMaxTtlvDepth. Thread-safety: pure functions; a TtlvItem is
// a value.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace envelopefs {

inline constexpr size_t kMaxTtlvMessage = 1 << 20;
inline constexpr int kMaxTtlvDepth = 16;
inline constexpr size_t kMaxTtlvItems = 4096;
inline constexpr size_t kTtlvHeaderSize = 8;  // tag (3), type (1), length (4), big-endian

enum class TtlvType : uint8_t {
  kStructure = 0x01,
  kInteger = 0x02,
  kLongInteger = 0x03,
  kBigInteger = 0x04,
  kEnumeration = 0x05,
  kBoolean = 0x06,
  kTextString = 0x07,
  kByteString = 0x08,
  kDateTime = 0x09,
  kInterval = 0x0A,
};

struct TtlvItem {
  uint32_t tag = 0;  // 24 bits (0x42xxxx for the standard tags)
  TtlvType type = TtlvType::kStructure;
  int64_t number = 0;              // Integer, LongInteger, Enumeration, Boolean, DateTime, Interval
  std::vector<uint8_t> bytes;      // TextString, ByteString, BigInteger
  std::vector<TtlvItem> children;  // Structure

  // The first child with `tag`, or null.
  const TtlvItem* Find(uint32_t tag) const;
  std::string text() const { return std::string(bytes.begin(), bytes.end()); }
};

TtlvItem TtlvStructure(uint32_t tag, std::vector<TtlvItem> children);
TtlvItem TtlvInteger(uint32_t tag, int32_t value);
TtlvItem TtlvEnum(uint32_t tag, uint32_t value);
TtlvItem TtlvBool(uint32_t tag, bool value);
TtlvItem TtlvText(uint32_t tag, const std::string& value);
TtlvItem TtlvBytes(uint32_t tag, std::span<const uint8_t> value);

std::vector<uint8_t> EncodeTtlv(const TtlvItem& item);

// The total size (header + padded value) of the message whose first kTtlvHeaderSize bytes are
// `header`; throws Error(kFormat) when it is not a structure or exceeds kMaxTtlvMessage.
size_t TtlvMessageSize(std::span<const uint8_t> header);

// Decodes exactly one item filling `bytes`; throws Error(kFormat) (see above).
TtlvItem DecodeTtlv(std::span<const uint8_t> bytes);

}  // namespace envelopefs
