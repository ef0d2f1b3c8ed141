// Test support for the NameTransform unit tests (name_transform_test.cc,
// name_transform_symlink_xattr_test.cc): name transforms with fresh random keys in either volume
// format, fixed directory IVs, names of any length mixing ASCII and UTF-8. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "envelopefs/name_transform.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs::testing {

constexpr char kBase64UrlAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr uint32_t kFormat1 = 1;
constexpr uint32_t kFormat2 = 2;

inline NameTransform MakeNames(bool plaintext = false, uint32_t format = kFormat2) {
  return NameTransform(SecureBytes::Random(64), SecureBytes::Random(32), plaintext, format);
}

inline std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline DirIv PatternIv(uint8_t start) {
  DirIv iv;
  for (size_t i = 0; i < iv.size(); ++i) iv[i] = static_cast<uint8_t>(start + i);
  return iv;
}

// A name of exactly `length` bytes mixing ASCII and whole UTF-8 sequences.
inline std::string MixedName(size_t length) {
  static const std::vector<std::string> kPieces = {"a", "é", "Z", "日本", "-", "ß", " ", "€"};
  std::string name;
  for (size_t i = 0; name.size() < length; ++i) {
    const std::string& piece = kPieces[i % kPieces.size()];
    name += name.size() + piece.size() <= length ? piece : "x";
  }
  return name;
}

inline bool IsBase64Url(const std::string& s) {
  return s.find_first_not_of(kBase64UrlAlphabet) == std::string::npos;
}

}  // namespace envelopefs::testing
