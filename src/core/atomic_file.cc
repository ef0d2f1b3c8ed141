// AtomicFile — see atomic_file.h.
#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

void WriteAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSystemError("cannot write " + path.string());
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void SyncDirectory(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) ThrowSystemError("cannot sync " + dir.string());
}

}  // namespace

void WriteFileAtomically(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  std::array<uint8_t, 8> suffix{};
  RandomBytes(suffix);
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::filesystem::path temp = dir / (".envelopefs.tmp." + ToHex(suffix));
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) ThrowSystemError("cannot create " + temp.string());
  try {
    WriteAll(fd.get(), content, temp);
    if (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0) {
      ThrowSystemError("cannot sync " + temp.string());
    }
    fd.reset();
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      ThrowSystemError("cannot replace " + path.string());
    }
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  SyncDirectory(dir);
}

std::optional<std::string> ReadSmallFile(const std::filesystem::path& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::string content;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > max_size) {
      throw Error(ErrorKind::kConfig, path.string() + ": file too large");
    }
  }
  return content;
}

}  // namespace envelopefs
