// Test support: see inode_number_reuse.h.
#include "inode_number_reuse.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <system_error>
#include <vector>

namespace envelopefs::testing {

std::filesystem::path CreateFileWithInodeNumber(const std::filesystem::path& dir, ino_t ino,
                                                int tries) {
  std::vector<std::filesystem::path> others;  // kept until the end, or their numbers come back
  std::filesystem::path found;
  for (int i = 0; i < tries && found.empty(); ++i) {
    std::filesystem::path path =
        dir / ("reuse-" + std::to_string(getpid()) + "-" + std::to_string(i));
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) break;
    struct stat st;
    const bool match = fstat(fd, &st) == 0 && st.st_ino == ino;
    close(fd);
    if (match) {
      found = path;
    } else {
      others.push_back(path);
    }
  }
  for (const auto& path : others) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  return found;
}

}  // namespace envelopefs::testing
