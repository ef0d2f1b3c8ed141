// HostState — see host_state.h.
#include "envelopefs/host_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

#include "atomic_file.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

constexpr size_t kMaxStateSize = 4096;

void WarnOnce(const std::string& what) {
  static std::once_flag once;
  std::call_once(once, [&] {
    Log(LogLevel::kWarning, "no host state (" + what +
                                "): keyring rollback and audit-log truncation cannot be "
                                "detected on this host");
  });
}

// Opens (creating if needed, mode 0700) the state directory.
UniqueFd OpenStateDirectory() {
  const std::filesystem::path dir = HostState::Directory();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec) ::chmod(dir.c_str(), 0700);
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) WarnOnce(dir.string() + ": " + std::strerror(errno));
  return fd;
}

// Replaces `name` by a new file holding `text` (rename: readers never see half of it), without
// the fsyncs of a durable replacement.
int ReplaceQuickly(int dirfd, const std::string& name, const std::string& text) {
  const std::string temp = name + ".tmp";
  UniqueFd fd(
      ::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return -errno;
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return errno != 0 ? -errno : -EIO;
  }
  fd.reset();
  return ::renameat(dirfd, temp.c_str(), dirfd, name.c_str()) == 0 ? 0 : -errno;
}

uint64_t Field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " = ", 0) == 0)
      return std::strtoull(line.c_str() + key.size() + 3, nullptr, 10);
  }
  return 0;
}

}  // namespace

HostState::HostState(const VolumeId& volume_id) : volume_hex_(ToHex(volume_id)) {}

std::filesystem::path HostState::Directory() {
  if (const char* dir = std::getenv("ENVELOPEFS_STATE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  if (::geteuid() == 0) return "/var/lib/envelopefs";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && *xdg == '/') {
    return std::filesystem::path(xdg) / "envelopefs";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    return std::filesystem::path(home) / ".local/state/envelopefs";
  }
  return "/nonexistent/envelopefs-state";
}

std::filesystem::path HostState::file() const { return Directory() / (volume_hex_ + ".state"); }

HostState::Values HostState::Read() const {
  Values v;
  UniqueFd dir(::open(Directory().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return v;
  auto text = ReadSmallFileIn(dir.get(), volume_hex_ + ".state", kMaxStateSize, file().string());
  if (!text) return v;
  v.keyring_generation = Field(*text, "keyring_generation");
  v.audit_sequence = Field(*text, "audit_sequence");
  return v;
}

template <typename F>
bool HostState::Update(F&& change, bool durable) {
  UniqueFd dir = OpenStateDirectory();
  if (!dir.valid()) return false;
  UniqueFd lock(::openat(dir.get(), (volume_hex_ + ".lock").c_str(),
                         O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lock.valid()) {
    WarnOnce(file().string() + ": " + std::strerror(errno));
    return false;
  }
  while (::flock(lock.get(), LOCK_EX) != 0 && errno == EINTR) {
  }
  Values v = Read();
  Values before = v;
  change(v);  // may throw: the lock is released with the fd
  if (v.keyring_generation == before.keyring_generation &&
      v.audit_sequence == before.audit_sequence) {
    return true;
  }
  std::ostringstream out;
  out << "# envelopefs host state for volume " << volume_hex_ << " (see envelopefs(1))\n"
      << "keyring_generation = " << v.keyring_generation << "\n"
      << "audit_sequence = " << v.audit_sequence << "\n";
  const std::string text = out.str();
  int rc = durable ? WriteFileAtomicallyAt(dir.get(), volume_hex_ + ".state", AsBytes(text), 0600,
                                           /*no_replace=*/false)
                   : ReplaceQuickly(dir.get(), volume_hex_ + ".state", text);
  if (rc < 0) WarnOnce(file().string() + ": " + std::strerror(-rc));
  return rc == 0;
}

void HostState::CheckKeyringGeneration(uint64_t generation, const std::string& keyring) {
  Update(
      [&](Values& v) {
        if (generation < v.keyring_generation) {
          throw Error(ErrorKind::kConfig,
                      keyring + ": generation " + std::to_string(generation) +
                          " is older than generation " + std::to_string(v.keyring_generation) +
                          " that this host has seen: an old copy of the keyring was restored "
                          "(rollback), refused; if that is intended, delete " +
                          file().string());
        }
        v.keyring_generation = generation;
      },
      /*durable=*/true);
}

uint64_t HostState::keyring_generation() const { return Read().keyring_generation; }

uint64_t HostState::audit_sequence() const { return Read().audit_sequence; }

void HostState::RecordAuditSequence(uint64_t sequence) {
  // Not flushed: a line's number lost in a crash only weakens the check of the log's end.
  Update([&](Values& v) { v.audit_sequence = std::max(v.audit_sequence, sequence); },
         /*durable=*/false);
}

}  // namespace envelopefs
