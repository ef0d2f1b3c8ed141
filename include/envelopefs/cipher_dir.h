// CipherDirWalker — enumerates a cipher dir without FUSE, for the offline tools (rewrap, verify,
// audit, ls, decrypt).
//
// Walks the backing tree depth-first, skipping the volume's internal files, and reports each
// entry with its cipher path and, when a NameTransform is given, its plaintext path (entries
// whose names do not authenticate are reported with `name_ok == false`). Uses d_type to avoid
// a stat per entry. Not thread-safe; one walker per thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>

#include "envelopefs/name_transform.h"

namespace envelopefs {

struct CipherEntry {
  std::string cipher_path;  // absolute (for messages; open through `relative`)
  std::string relative;     // the cipher path relative to the cipher dir
  std::string plain_path;   // relative to the volume root; empty if unknown
  bool name_ok = true;      // the name (and every parent's) authenticated
  unsigned char type = 0;   // DT_REG, DT_DIR, DT_LNK, ...
};

// Calls `visit` for every entry below `cipher_dir` (not the root itself), skipping the files
// `names` calls internal. Without the volume's keys (a NameTransform with zero keys) names do
// not decrypt: entries then have name_ok == false and empty plaintext paths. Directories whose
// IV cannot be read are reported likewise; their entries are still visited. A directory that
// cannot be opened or read throws Error (one removed since it was listed is skipped): no walk
// ends early in silence.
void WalkCipherDir(const std::filesystem::path& cipher_dir, const NameTransform& names,
                   const std::function<void(const CipherEntry&)>& visit);

}  // namespace envelopefs
