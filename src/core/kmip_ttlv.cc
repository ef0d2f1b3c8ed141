// KMIP TTLV encoder and decoder — see kmip_ttlv.h.
#include "envelopefs/kmip_ttlv.h"

#include "envelopefs/error.h"

namespace envelopefs {
namespace {

size_t Padded(size_t n) { return (n + 7) / 8 * 8; }

uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

void PutBe(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

[[noreturn]] void Bad(const std::string& what) {
  throw Error(ErrorKind::kFormat, "malformed KMIP message from the server: " + what);
}

// The value length a fixed-size type must have; 0 for variable-length types.
size_t FixedLength(TtlvType type) {
  switch (type) {
    case TtlvType::kInteger:
    case TtlvType::kEnumeration:
    case TtlvType::kInterval:
      return 4;
    case TtlvType::kLongInteger:
    case TtlvType::kBoolean:
    case TtlvType::kDateTime:
      return 8;
    default:
      return 0;
  }
}

bool KnownType(uint8_t t) { return t >= 0x01 && t <= 0x0A; }

void Encode(const TtlvItem& item, std::vector<uint8_t>& out) {
  PutBe(out, item.tag & 0xFFFFFF, 3);
  out.push_back(static_cast<uint8_t>(item.type));
  size_t length_at = out.size();
  PutBe(out, 0, 4);
  size_t start = out.size();
  size_t length = FixedLength(item.type);
  if (item.type == TtlvType::kStructure) {
    for (const auto& child : item.children) Encode(child, out);
    length = out.size() - start;
  } else if (length == 4) {
    PutBe(out, static_cast<uint32_t>(item.number), 4);
  } else if (length == 8) {
    PutBe(out, static_cast<uint64_t>(item.number), 8);
  } else {
    out.insert(out.end(), item.bytes.begin(), item.bytes.end());
    length = item.bytes.size();
  }
  for (int i = 0; i < 4; ++i) out[length_at + i] = static_cast<uint8_t>(length >> (8 * (3 - i)));
  out.resize(start + Padded(length), 0);
}

class Decoder {
 public:
  explicit Decoder(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  // Decodes the item at `pos`, which must end (padding included) at or before `end`.
  TtlvItem Item(size_t& pos, size_t end, int depth) {
    if (depth > kMaxTtlvDepth) Bad("structures nested too deep");
    if (++items_ > kMaxTtlvItems) Bad("too many items");
    if (end - pos < kTtlvHeaderSize) Bad("truncated item header");
    const uint8_t* h = bytes_.data() + pos;
    TtlvItem item;
    item.tag = uint32_t{h[0]} << 16 | uint32_t{h[1]} << 8 | h[2];
    if (!KnownType(h[3])) Bad("unknown item type " + std::to_string(h[3]));
    item.type = static_cast<TtlvType>(h[3]);
    size_t length = Be32(h + 4);
    pos += kTtlvHeaderSize;
    if (length > end - pos || Padded(length) > end - pos) Bad("item longer than its container");
    size_t fixed = FixedLength(item.type);
    if (fixed != 0 && length != fixed) Bad("wrong length for the item's type");
    const uint8_t* v = bytes_.data() + pos;
    if (item.type == TtlvType::kStructure) {
      if (length % 8 != 0) Bad("structure length not a multiple of 8");
      size_t child = pos;
      size_t child_end = pos + length;
      while (child < child_end) item.children.push_back(Item(child, child_end, depth + 1));
    } else if (fixed == 4) {
      item.number = static_cast<int32_t>(Be32(v));
      if (item.type == TtlvType::kEnumeration) item.number = Be32(v);
    } else if (fixed == 8) {
      item.number = static_cast<int64_t>(uint64_t{Be32(v)} << 32 | Be32(v + 4));
      if (item.type == TtlvType::kBoolean && item.number != 0 && item.number != 1) {
        Bad("boolean neither 0 nor 1");
      }
    } else {
      if (item.type == TtlvType::kBigInteger && length % 8 != 0) Bad("big integer length");
      item.bytes.assign(v, v + length);
    }
    for (size_t i = length; i < Padded(length); ++i) {
      if (v[i] != 0) Bad("non-zero padding");
    }
    pos += Padded(length);
    return item;
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t items_ = 0;
};

}  // namespace

const TtlvItem* TtlvItem::Find(uint32_t wanted) const {
  for (const auto& child : children) {
    if (child.tag == wanted) return &child;
  }
  return nullptr;
}

TtlvItem TtlvStructure(uint32_t tag, std::vector<TtlvItem> children) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kStructure;
  item.children = std::move(children);
  return item;
}

TtlvItem TtlvInteger(uint32_t tag, int32_t value) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kInteger;
  item.number = value;
  return item;
}

TtlvItem TtlvEnum(uint32_t tag, uint32_t value) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kEnumeration;
  item.number = value;
  return item;
}

TtlvItem TtlvBool(uint32_t tag, bool value) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kBoolean;
  item.number = value ? 1 : 0;
  return item;
}

TtlvItem TtlvText(uint32_t tag, const std::string& value) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kTextString;
  item.bytes.assign(value.begin(), value.end());
  return item;
}

TtlvItem TtlvBytes(uint32_t tag, std::span<const uint8_t> value) {
  TtlvItem item;
  item.tag = tag;
  item.type = TtlvType::kByteString;
  item.bytes.assign(value.begin(), value.end());
  return item;
}

std::vector<uint8_t> EncodeTtlv(const TtlvItem& item) {
  std::vector<uint8_t> out;
  Encode(item, out);
  return out;
}

size_t TtlvMessageSize(std::span<const uint8_t> header) {
  if (header.size() < kTtlvHeaderSize) Bad("truncated message header");
  if (header[3] != static_cast<uint8_t>(TtlvType::kStructure)) Bad("not a structure");
  size_t length = Be32(header.data() + 4);
  if (length > kMaxTtlvMessage - kTtlvHeaderSize) Bad("message too long");
  if (length % 8 != 0) Bad("structure length not a multiple of 8");
  return kTtlvHeaderSize + length;
}

TtlvItem DecodeTtlv(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxTtlvMessage) Bad("message too long");
  Decoder decoder(bytes);
  size_t pos = 0;
  TtlvItem item = decoder.Item(pos, bytes.size(), 0);
  if (pos != bytes.size()) Bad("trailing bytes");
  return item;
}

}  // namespace envelopefs
