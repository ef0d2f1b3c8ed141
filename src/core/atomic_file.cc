// AtomicFile — see atomic_file.h.
#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "envelopefs/beneath.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

int WriteAll(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return 0;
}

}  // namespace

std::string RandomTempName() {
  std::array<uint8_t, 8> random{};
  RandomBytes(random);
  return kTempPrefix + ToHex(random);
}

int SyncDirectoryAt(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  UniqueFd owned(fd);
  return ::fsync(fd) == 0 ? 0 : -errno;
}

int WriteFileAtomicallyAt(int dirfd, const std::string& name, std::span<const uint8_t> data,
                          mode_t mode, bool no_replace) {
  std::string temp = RandomTempName();
  int raw =
      ::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (raw < 0) return -errno;
  UniqueFd fd(raw);
  int rc = WriteAll(fd.get(), data);
  // fchmod: the mode given to openat is filtered by the umask.
  if (rc == 0 && (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0)) rc = -errno;
  fd.reset();
  if (rc == 0 && ::renameat2(dirfd, temp.c_str(), dirfd, name.c_str(),
                             no_replace ? RENAME_NOREPLACE : 0) != 0) {
    rc = -errno;
  }
  if (rc != 0) {
    ::unlinkat(dirfd, temp.c_str(), 0);
    return rc;
  }
  return SyncDirectoryAt(dirfd);
}

std::optional<std::vector<uint8_t>> ReadSmallFileAt(int fd, size_t limit) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
    return std::nullopt;
  }
  if (static_cast<uint64_t>(st.st_size) > limit) {
    errno = EFBIG;
    return std::nullopt;
  }
  // Sized by fstat, growing only if the file grows while it is read (never past limit + 1).
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  for (;;) {
    if (got == data.size()) {
      if (data.size() > limit) break;
      data.resize(std::min(limit + 1, 2 * data.size()));
    }
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > limit) {  // grew while we read it
    errno = EFBIG;
    return std::nullopt;
  }
  data.resize(got);
  return data;
}

void ReplaceFileIn(int dirfd, const std::string& name, std::string_view content, mode_t mode,
                   const std::string& display) {
  int rc = WriteFileAtomicallyAt(dirfd, name, AsBytes(content), mode, /*no_replace=*/false);
  if (rc < 0) {
    errno = -rc;
    ThrowSystemError("cannot replace " + display);
  }
}

std::optional<std::string> ReadSmallFileIn(int dirfd, const std::string& name, size_t max_size,
                                           const std::string& display) {
  // Never opens a FIFO or device planted under this name (see OpenRegularFileAt).
  int raw = OpenRegularFileAt(dirfd, name, O_RDONLY);
  if (raw < 0) {
    errno = -raw;
    return std::nullopt;
  }
  UniqueFd fd(raw);
  auto data = ReadSmallFileAt(fd.get(), max_size);
  if (!data) {
    if (errno == EFBIG) throw Error(ErrorKind::kConfig, display + ": file too large");
    return std::nullopt;
  }
  return std::string(data->begin(), data->end());
}

}  // namespace envelopefs
