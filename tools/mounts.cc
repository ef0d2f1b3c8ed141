// Finding the envelopefs mount of a path — see mounts.h.
#include "mounts.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace envelopefs::cli {

namespace fs = std::filesystem;

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string digits = field.substr(i + 1, 3);
      if (digits.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(digits, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

// True if `path` is `dir` or below it (both absolute and normal).
bool IsWithin(const fs::path& path, const fs::path& dir) {
  auto p = path.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

}  // namespace

std::optional<EnvelopeMount> FindEnvelopeMount(const fs::path& path) {
  std::error_code ec;
  fs::path target = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) return std::nullopt;
  std::ifstream in("/proc/self/mountinfo");
  std::optional<EnvelopeMount> best;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 2 >= f.size() || f[dash + 1] != "fuse.envelopefs") continue;
    const fs::path mount_point = Unescape(f[4]);
    if (!IsWithin(target, mount_point)) continue;
    if (best && mount_point.string().size() <= best->mount_point.string().size()) continue;
    best = EnvelopeMount{mount_point, Unescape(f[dash + 2])};
  }
  return best;
}

}  // namespace envelopefs::cli
