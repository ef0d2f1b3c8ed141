// TomlGuard — a check of untrusted TOML text (the config and the keyring come from the cipher
// dir) before it reaches the parser. toml++ bounds the nesting of arrays and inline tables but
// not the number of components of a dotted key or table header, and recurses once per
// component: a header such as [a.a.a...] with 100,000 parts overflows the stack. Our files never
// have more than a few parts per line, nor long lines. Pure, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace envelopefs {

inline constexpr size_t kTomlMaxLineLength = 1024;
inline constexpr size_t kTomlMaxDotsPerLine = 8;

// Why `text` is not shaped like one of our files, or nullopt.
inline std::optional<std::string> TomlShapeProblem(std::string_view text) {
  size_t line = 1;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view l = text.substr(0, end);
    if (l.size() > kTomlMaxLineLength) return "line " + std::to_string(line) + " is too long";
    size_t dots = 0;
    for (char c : l) dots += c == '.' ? 1 : 0;
    if (dots > kTomlMaxDotsPerLine) {
      return "line " + std::to_string(line) + " has too many key parts";
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
    ++line;
  }
  return std::nullopt;
}

}  // namespace envelopefs
