// Test support shared by the envelopectl tests — see envelopectl_fixture.h.
#include "envelopectl_fixture.h"

#include <gtest/gtest.h>

#include <span>

namespace envelopefs::testing {

// Runs envelopectl with the volume's key and parses its standard output as JSON.
json CtlJson(const OfflineVolume& v, const std::string& args, int* exit_code) {
  CommandResult r = RunCommand(v.Ctl(args + " --json") + " 2>/dev/null");
  if (exit_code != nullptr) *exit_code = r.exit_code;
  json j = json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.output;
  return j;
}

// Both key slots of a cipher file (no key needed).
std::pair<KeySlotInfo, KeySlotInfo> Slots(const fs::path& cipher) {
  std::vector<uint8_t> b = ReadBytes(cipher);
  if (b.size() < kHeader) return {};
  auto slot = [&](int i) {
    return ParseKeySlot(std::span<const uint8_t, format::kKeySlotSize>(
        b.data() + format::kKeySlotOffset[i], format::kKeySlotSize));
  };
  return {slot(0), slot(1)};
}

bool BothSlotsOn(const fs::path& cipher, uint32_t version) {
  auto [a, b] = Slots(cipher);
  return a.kek_version == version && b.kek_version == version;
}

// Every regular file of `dir` by relative path, with its content.
std::map<std::string, std::string> TreeContents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const fs::path& p : FilesBelow(dir)) out[p.lexically_relative(dir).string()] = ReadFile(p);
  return out;
}

std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.insert(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<json> AuditLines(const fs::path& log) {
  std::vector<json> out;
  for (const std::string& line : Lines(ReadFile(log))) out.push_back(json::parse(line));
  return out;
}

const json* FindEvent(const std::vector<json>& events, const std::string& name) {
  for (const json& e : events) {
    if (e["event"] == name) return &e;
  }
  return nullptr;
}

std::vector<uint8_t> Bytes(const fs::path& p, uint64_t offset, size_t n) {
  std::vector<uint8_t> all = ReadBytes(p);
  return std::vector<uint8_t>(all.begin() + static_cast<long>(offset),
                              all.begin() + static_cast<long>(offset + n));
}

void ExpectOneLine(const std::string& command, int code, const std::string& part) {
  CommandResult r = RunCommand(command + " 2>&1");
  EXPECT_EQ(code, r.exit_code) << command << "\n" << r.output;
  EXPECT_EQ(1u, LineCount(r.output)) << command << "\n" << r.output;
  EXPECT_TRUE(Contains(r.output, part)) << command << "\n" << r.output;
}

std::string KeyringValue(const std::string& keyring_text, const std::string& name) {
  // In a keyring, the [master_key] (format 2) or first [slot.master_key] (format 3) section.
  const size_t section = keyring_text.find("master_key]");
  const size_t at = keyring_text.find(name + " = '", section == std::string::npos ? 0 : section);
  EXPECT_NE(std::string::npos, at) << name;
  if (at == std::string::npos) return "";
  const size_t start = at + name.size() + 4;
  return keyring_text.substr(start, keyring_text.find('\'', start) - start);
}

void ExpectKeyringEdits(const fs::path& keyring, const std::string& original,
                        const std::string& command, const std::vector<KeyringEdit>& edits) {
  for (const auto& e : edits) {
    std::string edited = original;
    const size_t at = edited.find(e.from);
    ASSERT_NE(std::string::npos, at) << e.from;
    edited.replace(at, e.from.size(), e.to);
    WriteFile(keyring, edited);
    ExpectOneLine(command, e.code, e.message);
  }
}

}  // namespace envelopefs::testing
