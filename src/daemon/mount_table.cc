// MountTable — see mount_table.h.
#include "mount_table.h"

#include <fstream>
#include <sstream>

namespace envelopefs {
namespace {

// Undoes the kernel's octal escapes (\ooo) in a mountinfo field.
std::string Unescape(const std::string& field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') {
          octal = false;
          break;
        }
        value = value * 8 + (c - '0');
      }
      if (octal && value < 256) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

}  // namespace

bool ParseMountInfoLine(const std::string& line, MountEntry* entry) {
  // "<id> <parent> <major:minor> <root> <mount point> <options> [optional...] - <type>
  //  <source> <super options>"
  std::istringstream in(line);
  std::string id, parent, device, root, point, options, field;
  if (!(in >> id >> parent >> device >> root >> point >> options)) return false;
  while (in >> field && field != "-") {
  }
  if (field != "-") return false;
  std::string type, source;
  if (!(in >> type >> source)) return false;
  entry->device = device;
  entry->root = Unescape(root);
  entry->mount_point = Unescape(point);
  entry->fs_type = Unescape(type);
  entry->source = Unescape(source);
  return true;
}

std::vector<MountEntry> ReadMountTable() {
  std::vector<MountEntry> table;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    MountEntry entry;
    if (ParseMountInfoLine(line, &entry)) table.push_back(std::move(entry));
  }
  return table;
}

bool IsMountPoint(const std::vector<MountEntry>& table, const std::string& path) {
  for (const MountEntry& m : table) {
    if (m.mount_point == path) return true;
  }
  return false;
}

}  // namespace envelopefs
