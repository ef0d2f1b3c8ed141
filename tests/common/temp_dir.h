// TempDir — the one scratch directory helper of the unit and integration tests: a fresh, empty
// directory (mode 0700, made by mkdtemp) under $TMPDIR, or /tmp if TMPDIR is unset or empty,
// named "<prefix>-XXXXXX", and removed with everything in it when the object is destroyed.
// Construction throws std::system_error if the directory cannot be made, so a test fails loudly
// instead of running somewhere else; removal ignores errors (a test may leave an unremovable
// entry behind, e.g. after chmod). Declare it before the members that use its path (members are
// built in declaration order and destroyed in reverse, so they are gone before the directory).
// Header-only. Not thread-safe: one object belongs to one thread; distinct objects are
// independent (mkdtemp makes each name unique).
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace envelopefs::testing {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "envelopefs-test") {
    const char* base = getenv("TMPDIR");
    std::filesystem::path parent =
        std::filesystem::absolute(base != nullptr && base[0] != '\0' ? base : "/tmp");
    std::string pattern = (parent / (std::string(prefix) + "-XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) {
      const int error = errno;
      throw std::system_error(error, std::generic_category(),
                              "TempDir: cannot make a directory in " + parent.string());
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace envelopefs::testing
