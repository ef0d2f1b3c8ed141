// Helpers shared by the envelopectl subcommands — see common.h.
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "envelopefs/beneath.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs::cli {

namespace fs = std::filesystem;

// --- volumes and options -------------------------------------------------------------------

bool IsVolumeRoot(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kConfigFileName, ec);
}

fs::path FindVolumeRoot(const fs::path& start) {
  std::error_code ec;
  fs::path dir = fs::absolute(start, ec).lexically_normal();
  if (!fs::is_directory(dir, ec)) dir = dir.parent_path();
  for (;;) {
    if (IsVolumeRoot(dir)) return dir;
    if (dir == dir.root_path() || dir.empty()) break;
    dir = dir.parent_path();
  }
  throw Error(ErrorKind::kConfig, "no " + std::string(kConfigFileName) + " in " + start.string() +
                                      " or above: not inside an envelopefs volume");
}

void RequireVolumeRoot(const fs::path& dir) {
  if (!IsVolumeRoot(dir)) {
    throw Error(ErrorKind::kConfig,
                (dir / kConfigFileName).string() + ": no such file: not an envelopefs volume");
  }
}

NameTransform MakeNameTransform(const Volume& volume) {
  return NameTransform(volume.name_key(), volume.xattr_key(), volume.config().plaintext_names,
                       volume.config().format_version);
}

UniqueFd OpenRoot(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) ThrowSystemError("open " + dir.string());
  return fd;
}

unsigned JobCount(const Args& args) {
  if (args.jobs > 0) return args.jobs;
  return std::max(1u, std::thread::hardware_concurrency());
}

int64_t NowUnix() { return static_cast<int64_t>(::time(nullptr)); }

// --- walking ---------------------------------------------------------------------------------

std::vector<CipherEntry> CollectEntries(const fs::path& cipher_dir, const NameTransform& names) {
  std::vector<CipherEntry> entries;
  WalkCipherDir(cipher_dir, names, [&](const CipherEntry& e) { entries.push_back(e); });
  return entries;
}

uint64_t CountEntries(const fs::path& cipher_dir, const NameTransform& names,
                      const std::function<bool(const CipherEntry&)>& wanted) {
  uint64_t n = 0;
  WalkCipherDir(cipher_dir, names, [&](const CipherEntry& e) {
    if (!wanted || wanted(e)) ++n;
  });
  return n;
}

std::string DisplayName(const CipherEntry& entry) {
  return entry.plain_path.empty() ? entry.cipher_path : entry.plain_path;
}

const char* TypeName(unsigned char d_type) {
  switch (d_type) {
    case DT_REG:
      return "file";
    case DT_DIR:
      return "dir";
    case DT_LNK:
      return "symlink";
    case DT_FIFO:
      return "fifo";
    case DT_SOCK:
      return "socket";
    case DT_CHR:
      return "chardev";
    case DT_BLK:
      return "blockdev";
    default:
      return "unknown";
  }
}

// --- threads ---------------------------------------------------------------------------------

void RunOnThreads(unsigned jobs, const std::function<void(unsigned)>& body) {
  if (jobs <= 1) {
    body(0);
    return;
  }
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  threads.reserve(jobs);
  for (unsigned i = 0; i < jobs; ++i) {
    threads.emplace_back([&, i] {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

std::pair<size_t, size_t> SliceBounds(size_t n, unsigned parts, unsigned i) {
  return {n * i / parts, n * (i + 1) / parts};
}

void ParallelFor(size_t n, unsigned jobs, const std::function<void(size_t)>& fn) {
  jobs = static_cast<unsigned>(std::clamp<size_t>(n, 1, jobs));
  std::atomic<size_t> next{0};  // dynamic: a thread that meets big files does not hold up others
  RunOnThreads(jobs, [&](unsigned) {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  });
}

// --- headers ---------------------------------------------------------------------------------

namespace {

HeaderRead Unreadable(int error) {
  HeaderRead r;
  r.error = error;
  r.reason = error == EINVAL ? std::string("not a regular file (replaced in the cipher dir?)")
                             : std::string("open: ") + std::strerror(error);
  return r;
}

}  // namespace

HeaderRead ReadEntryHeader(int root_fd, const CipherEntry& entry) {
  // Never a FIFO or device planted in place of a file (it could hang the walk).
  int fd = OpenRegularBeneath(root_fd, entry.relative, O_RDONLY);
  if (fd < 0) return Unreadable(-fd);
  UniqueFd owned(fd);
  return ReadHeader(fd);
}

HeaderRead ReadHeaderAt(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Unreadable(errno);
  return ReadHeader(fd.get());
}

KekTable::KekTable(const Volume& volume) {
  for (const KekInfo& info : volume.Keks()) {
    SecureBytes key;
    if (volume.FindKek(info.id, info.version, key)) {
      keks_.emplace(std::make_pair(info.id, info.version), std::move(key));
    }
  }
}

bool KekTable::FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const {
  auto it = keks_.find({id, version});
  if (it == keks_.end()) return false;
  key_out = it->second.Clone();
  return true;
}

std::string KekLabel(uint32_t id, uint32_t version) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", id);
  return "version " + std::to_string(version) + " (id " + hex + ")";
}

HeaderCheck CheckHeader(const HeaderRead& header, const KekSource& keks) {
  HeaderCheck check;
  OpenedHeader opened = OpenHeader(header, keks);
  check.slot = opened.slot;
  if (opened.slot >= 0) check.dek_fingerprint = DekFingerprint(opened.dek);
  check.ok = opened.ok;
  check.reason = opened.problem;
  check.state = opened.state;
  return check;
}

// --- reading plaintext -----------------------------------------------------------------------

void DamageCollector::Damaged(const Damage& damage) {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = damage.detail;
}

std::string DamageCollector::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(last_, std::string());
}

void DamageCollector::CopyDamaged(const Damage& damage) {
  std::lock_guard<std::mutex> lock(mu_);
  copy_ = damage.detail;
}

std::string DamageCollector::TakeCopyDamage() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(copy_, std::string());
}

std::shared_ptr<CipherFile> OpenEntry(const Volume& volume, const CipherEntry& entry,
                                      DamageReporter& damage) {
  int fd = OpenRegularBeneath(volume.root_fd(), entry.relative, O_RDONLY);
  if (fd < 0) {
    errno = -fd;
    ThrowSystemError("open " + entry.cipher_path);
  }
  return CipherFile::Open(UniqueFd(fd), volume, "", damage);
}

int StreamPlaintext(CipherFile& file, const std::function<void(std::span<const uint8_t>)>& sink) {
  std::vector<uint8_t> buffer(kReadStep);
  uint64_t offset = 0;
  for (;;) {
    ssize_t n = file.Read(buffer, offset);
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return 0;
    sink(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
}

void UseToolLogSink() {
  SetLogSink([](LogLevel level, const std::string& message) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    std::fprintf(stderr, "envelopectl: %s%s\n", level >= LogLevel::kWarning ? "warning: " : "",
                 message.c_str());
  });
}

// --- key policy report -----------------------------------------------------------------------

KeyPolicyReport KeyPolicyOf(const Volume& volume) {
  KeyPolicyReport r;
  r.now = NowUnix();
  r.rotate_after_days = volume.policy().rotate_after_days;
  r.statuses = EvaluateKeyPolicy(volume.Keks(), r.rotate_after_days, r.now);
  r.authenticated = true;
  return r;
}

KeyPolicyReport ClaimedKeyPolicy(int root_fd, const fs::path& cipher_dir,
                                 const VolumeConfig& config) {
  const KeyringFile file = KeyringFile::Read(root_fd, cipher_dir);
  KeyPolicyReport r;
  r.now = NowUnix();
  r.rotate_after_days = file.claimed_policy(config).rotate_after_days;
  r.statuses = EvaluateKeyPolicy(file.claimed_keks(config), r.rotate_after_days, r.now);
  r.authenticated = false;
  return r;
}

nlohmann::json KeysJson(const std::vector<KekPolicyStatus>& statuses) {
  nlohmann::json keys = nlohmann::json::array();
  for (const KekPolicyStatus& s : statuses) {
    keys.push_back({{"version", s.info.version},
                    {"id", s.info.id},
                    {"state", KekStateName(s.info.state)},
                    {"created", FormatUtc(s.info.created_unix)},
                    {"age_days", s.age_days},
                    {"rotation_due", s.rotation_due ? nlohmann::json(FormatUtc(*s.rotation_due))
                                                    : nlohmann::json(nullptr)},
                    {"days_to_rotation", s.days_to_rotation ? nlohmann::json(*s.days_to_rotation)
                                                            : nlohmann::json(nullptr)},
                    {"overdue", s.overdue}});
  }
  return keys;
}

void PrintKeysTable(const KeyPolicyReport& report) {
  std::printf("%-8s %-10s %-13s %-21s %8s  %s\n", "VERSION", "ID", "STATE", "CREATED", "AGE",
              "ROTATION DUE");
  for (const KekPolicyStatus& s : report.statuses) {
    std::string due = s.rotation_due ? FormatUtc(*s.rotation_due) : "-";
    if (s.overdue) due += " (OVERDUE)";
    std::printf("%-8u 0x%08x %-13s %-21s %7lldd  %s\n", s.info.version, s.info.id,
                KekStateName(s.info.state), FormatUtc(s.info.created_unix).c_str(),
                static_cast<long long>(s.age_days), due.c_str());
  }
  std::printf("rotation policy: every %u days (change it with envelopectl keys policy)\n",
              report.rotate_after_days);
  if (!report.authenticated) {
    std::printf(
        "note: no key given: versions, dates and policy are as stored in %s, NOT authenticated "
        "(anyone who can write the cipher dir can change them)\n",
        kKeyringFileName);
  }
}

void WarnOverdue(const KeyPolicyReport& report, const std::string& rotate_command) {
  for (const KekPolicyStatus& s : report.statuses) {
    if (!s.overdue) continue;
    std::fprintf(stderr,
                 "envelopectl: rotation overdue: active KEK version %u is %lld days old "
                 "(policy: %u days%s); run %s\n",
                 s.info.version, static_cast<long long>(s.age_days), report.rotate_after_days,
                 report.authenticated ? "" : ", unauthenticated: no key given",
                 rotate_command.c_str());
  }
}

void PrintJson(const nlohmann::json& value) {
  // Names need not be UTF-8: invalid bytes become U+FFFD rather than failing the command.
  std::cout << value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

void WriteAll(int fd, std::span<const uint8_t> data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSystemError("write " + what);
    data = data.subspan(static_cast<size_t>(n));
  }
}

}  // namespace envelopefs::cli
