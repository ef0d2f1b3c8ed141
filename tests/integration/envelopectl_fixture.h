// Test support shared by the envelopectl tests (envelopectl_*_test.cc, and the master-key
// source tests): running envelopectl on an OfflineVolume for its JSON, edits of a keyring
// refused with one line, the key slots of a cipher file, a tree's contents, the audit
// log's events, and the format's offsets for a volume of 4 KiB chunks. Not thread-safe (gtest
// assertions).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "envelopefs/file_format.h"
#include "envelopefs/file_header.h"
#include "mount_fixture.h"
#include "offline_volume.h"

namespace envelopefs::testing {

using nlohmann::json;

inline constexpr uint64_t kHeader = format::kHeaderSize;
inline constexpr uint64_t kChunk = 4096;  // OfflineVolume's and the tests' --chunk-size
inline constexpr uint64_t kStride = kChunk + format::kChunkOverhead;

inline const std::string kCtl = ENVELOPECTL_BINARY;

// Runs `command` (stderr joined to stdout); expects exit `code` and exactly one line containing
// `part`.
void ExpectOneLine(const std::string& command, int code, const std::string& part);

// The value of `name = '...'` in a keyring's text (the first one), or "" (a test failure) if
// there is none.
std::string KeyringValue(const std::string& keyring_text, const std::string& name);

// One edit of a keyring's text: `from` replaced by `to`, after which a command exits `code` with
// one line containing `message`.
struct KeyringEdit {
  std::string from, to;
  int code;
  std::string message;
};
// Writes each of `edits`, made to `original` in turn, to `keyring` and runs `command` on it
// (ExpectOneLine). Leaves the last edit in place.
void ExpectKeyringEdits(const fs::path& keyring, const std::string& original,
                        const std::string& command, const std::vector<KeyringEdit>& edits);

// Runs envelopectl with the volume's key and parses its standard output as JSON.
json CtlJson(const OfflineVolume& v, const std::string& args, int* exit_code = nullptr);

// Both key slots of a cipher file (no key needed).
std::pair<KeySlotInfo, KeySlotInfo> Slots(const fs::path& cipher);
bool BothSlotsOn(const fs::path& cipher, uint32_t version);

// Every regular file of `dir` by relative path, with its content.
std::map<std::string, std::string> TreeContents(const fs::path& dir);

// The distinct non-empty lines of `text`.
std::set<std::string> Lines(const std::string& text);
// The events of an audit log, parsed.
std::vector<json> AuditLines(const fs::path& log);
// The first event named `name`, or nullptr.
const json* FindEvent(const std::vector<json>& events, const std::string& name);

// `n` bytes of file `p` from `offset`.
std::vector<uint8_t> Bytes(const fs::path& p, uint64_t offset, size_t n);

}  // namespace envelopefs::testing
