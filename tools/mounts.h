// Finding the envelopefs mount a path lies on, from /proc/self/mountinfo (for messages that point
// a user who named a plaintext path to the cipher dir). Reads only; thread-safe.
#pragma once

#include <filesystem>
#include <optional>

namespace envelopefs::cli {

struct EnvelopeMount {
  std::filesystem::path mount_point;  // where the plaintext view is mounted
  std::filesystem::path cipher_dir;   // the mount's source (the daemon names it as fsname)
};

// The innermost envelopefs mount (file system type fuse.envelopefs) holding `path` (made
// absolute and canonical as far as it exists), or nullopt.
std::optional<EnvelopeMount> FindEnvelopeMount(const std::filesystem::path& path);

}  // namespace envelopefs::cli
