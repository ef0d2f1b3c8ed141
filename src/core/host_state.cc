// HostState — see host_state.h.
#include "envelopefs/host_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

// Replaces `name` by a new file holding `text` (rename: readers never see half of it). The data
// is flushed before the rename, so a crash leaves the old file or the new one, never an empty
// one (which would forget everything this host has seen); the rename itself is not flushed.
int ReplaceQuickly(int dirfd, const std::string& name, const std::string& text) {
  const std::string temp = name + ".tmp";
  UniqueFd fd(
      ::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return -errno;
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return errno != 0 ? -errno : -EIO;
  }
  if (::fdatasync(fd.get()) != 0) return -errno;
  fd.reset();
  return ::renameat(dirfd, temp.c_str(), dirfd, name.c_str()) == 0 ? 0 : -errno;
}

// The value of "key = value" in `text`, or "".
std::string Field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " = ", 0) == 0) return line.substr(key.size() + 3);
  }
  return "";
}

uint64_t Number(const std::string& text, const std::string& key) {
  return std::strtoull(Field(text, key).c_str(), nullptr, 10);
}

std::vector<uint32_t> Versions(const std::string& list) {
  std::vector<uint32_t> out;
  std::istringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty())
      out.push_back(static_cast<uint32_t>(std::strtoul(item.c_str(), nullptr, 10)));
  }
  std::sort(out.begin(), out.end());
  return out;
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
  if (Field(*text, "keyring_generation").empty()) {
    Log(LogLevel::kWarning, file().string() +
                                ": damaged host state, ignored (what this host had "
                                "seen of the volume is forgotten)");
  }
  v.keyring.generation = Number(*text, "keyring_generation");
  v.keyring.digest = Field(*text, "keyring_digest");
  v.keyring.max_kek_version = static_cast<uint32_t>(Number(*text, "kek_max_version"));
  v.keyring.retired = Versions(Field(*text, "kek_retired"));
  v.audit.sequence = Number(*text, "audit_sequence");
  v.audit.sha256 = Field(*text, "audit_last_line");
  return v;
}

bool HostState::Values::operator==(const Values& o) const {
  return keyring.generation == o.keyring.generation && keyring.digest == o.keyring.digest &&
         keyring.max_kek_version == o.keyring.max_kek_version &&
         keyring.retired == o.keyring.retired && audit.sequence == o.audit.sequence &&
         audit.sha256 == o.audit.sha256;
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
  if (v == before) return true;
  std::string retired;
  for (uint32_t r : v.keyring.retired) retired += (retired.empty() ? "" : ",") + std::to_string(r);
  std::ostringstream out;
  out << "# envelopefs host state for volume " << volume_hex_ << " (see envelopectl(1), FILES)\n"
      << "keyring_generation = " << v.keyring.generation << "\n"
      << "keyring_digest = " << v.keyring.digest << "\n"
      << "kek_max_version = " << v.keyring.max_kek_version << "\n"
      << "kek_retired = " << retired << "\n"
      << "audit_sequence = " << v.audit.sequence << "\n"
      << "audit_last_line = " << v.audit.sha256 << "\n";
  const std::string text = out.str();
  int rc = durable ? WriteFileAtomicallyAt(dir.get(), volume_hex_ + ".state", AsBytes(text), 0600,
                                           /*no_replace=*/false)
                   : ReplaceQuickly(dir.get(), volume_hex_ + ".state", text);
  if (rc < 0) WarnOnce(file().string() + ": " + std::strerror(-rc));
  return rc == 0;
}

void HostState::CheckKeyring(const KeyringFacts& keyring, const std::string& display) {
  Update(
      [&](Values& v) {
        if (auto problem = KeyringRegression(v.keyring, keyring)) {
          throw Error(ErrorKind::kConfig, display + ": " + *problem +
                                              " than this host has seen: an old copy of the "
                                              "keyring was restored (rollback), refused; if "
                                              "that is intended, delete " +
                                              file().string());
        }
        // The newest keyring; the KEK facts only ever grow.
        const uint32_t max = std::max(v.keyring.max_kek_version, keyring.max_kek_version);
        std::vector<uint32_t> retired = v.keyring.retired;
        retired.insert(retired.end(), keyring.retired.begin(), keyring.retired.end());
        std::sort(retired.begin(), retired.end());
        retired.erase(std::unique(retired.begin(), retired.end()), retired.end());
        v.keyring = keyring;
        v.keyring.max_kek_version = max;
        v.keyring.retired = retired;
      },
      /*durable=*/true);
}

HostState::AuditMark HostState::audit_mark() const { return Read().audit; }

void HostState::RecordAuditLine(uint64_t sequence, const std::string& sha256) {
  // The rename is not flushed: a mark lost in a crash only weakens the check of the log's end.
  Update(
      [&](Values& v) {
        if (sequence > v.audit.sequence) v.audit = AuditMark{sequence, sha256};
      },
      /*durable=*/false);
}

}  // namespace envelopefs
