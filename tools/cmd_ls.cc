// envelopectl ls — lists the plaintext paths of every entry of a volume without FUSE (one per
// line, directories with a trailing '/'; --json adds cipher paths and types). Names are bytes:
// printed as they are, in JSON with invalid UTF-8 replaced (PrintJson). Entries whose names do
// not authenticate are reported on stderr, escaped.
#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "common.h"
#include "envelopefs/exit_codes.h"

namespace envelopefs::cli {

int RunLs(const Args& args) {
  ExpectArgs(args, 1, 1, "ls CIPHERDIR [--json]");
  const std::filesystem::path dir = args.words[1];
  RequireVolumeRoot(dir);
  auto volume = OpenVolume(args, dir, /*log_unlock=*/false);
  NameTransform names = MakeNameTransform(*volume);
  std::vector<CipherEntry> entries = CollectEntries(dir, names);
  std::sort(entries.begin(), entries.end(),
            [](const CipherEntry& a, const CipherEntry& b) { return a.plain_path < b.plain_path; });
  nlohmann::json list = nlohmann::json::array();
  size_t damaged = 0;
  for (const CipherEntry& e : entries) {
    if (!e.name_ok) {
      // The cipher name is the attacker's choice: escaped, so it cannot drive the terminal.
      std::fprintf(stderr, "envelopectl: damaged name: %s\n", EscapeName(e.cipher_path).c_str());
      ++damaged;
      continue;
    }
    if (args.json) {
      list.push_back(
          {{"path", e.plain_path}, {"cipher_path", e.cipher_path}, {"type", TypeName(e.type)}});
    } else {
      std::printf("%s%s\n", e.plain_path.c_str(), e.type == DT_DIR ? "/" : "");
    }
  }
  if (args.json) PrintJson(list);
  return damaged > 0 ? kExitDamaged : kExitOk;
}

}  // namespace envelopefs::cli
