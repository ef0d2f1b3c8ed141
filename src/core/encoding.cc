#include "envelopefs/encoding.h"

#include <sodium.h>

#include "envelopefs/crypto.h"

namespace envelopefs {

std::string ToHex(std::span<const uint8_t> bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

std::optional<std::vector<uint8_t>> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  // An empty vector's data() is null, which sodium_hex2bin must not be given (UB; found by
  // fuzz_volume_config).
  if (hex.empty()) return std::vector<uint8_t>();
  std::vector<uint8_t> out(hex.size() / 2);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, &end) != 0 ||
      len != out.size() || end != hex.data() + hex.size()) {
    return std::nullopt;
  }
  return out;
}

constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;

std::string ToBase64Url(std::span<const uint8_t> bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), kVariant);
  out.resize(out.size() - 1);  // drop the terminating NUL
  return out;
}

std::optional<std::vector<uint8_t>> FromBase64Url(std::string_view text) {
  std::vector<uint8_t> out(text.size() * 3 / 4 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        kVariant) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

namespace {

// The length of the valid UTF-8 sequence at the start of `s` and its code point, or 0.
size_t Utf8Sequence(std::string_view s, uint32_t* code_point) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t lead = byte(0);
  size_t length;
  uint32_t cp;
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  } else if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    cp = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    cp = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    cp = lead & 0x07;
  } else {
    return 0;  // a continuation byte, an overlong lead (c0, c1) or beyond U+10FFFF (f5..ff)
  }
  if (s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3f);
  }
  if ((length == 3 && cp < 0x800) || (length == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;  // overlong, out of range, or a surrogate
  }
  *code_point = cp;
  return length;
}

}  // namespace

std::string EscapeName(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  auto escape = [&out](uint8_t b) {
    out += "\\x";
    out += kHex[b >> 4];
    out += kHex[b & 0x0f];
  };
  for (size_t i = 0; i < bytes.size();) {
    uint32_t cp = 0;
    size_t length = Utf8Sequence(bytes.substr(i), &cp);
    if (length == 0) {
      escape(static_cast<uint8_t>(bytes[i++]));
      continue;
    }
    const bool control = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
    if (control || cp == '\\') {
      for (size_t k = 0; k < length; ++k) escape(static_cast<uint8_t>(bytes[i + k]));
    } else {
      out.append(bytes.substr(i, length));
    }
    i += length;
  }
  return out;
}

}  // namespace envelopefs
