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

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs::cli {

namespace fs = std::filesystem;

namespace {

constexpr char kFingerprintLabel[] = "envelopefs dek fingerprint v1";
constexpr char kTamperPrefix[] = "tamper: ";

thread_local std::string last_damage;

}  // namespace

// --- volumes and options -------------------------------------------------------------------

bool HasKeyOption(const Args& args) { return args.keyfile || args.passfile; }

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
  return NameTransform(volume.name_key(), volume.xattr_key(), volume.config().plaintext_names);
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

std::vector<CipherEntry> CollectFiles(const fs::path& cipher_dir, const NameTransform& names) {
  std::vector<CipherEntry> files;
  WalkCipherDir(cipher_dir, names, [&](const CipherEntry& e) {
    if (e.type == DT_REG) files.push_back(e);
  });
  return files;
}

std::string RelativeCipherPath(const fs::path& cipher_dir, const fs::path& path) {
  // WalkCipherDir names entries root / name / ..., with root = fs::absolute(cipher_dir).
  const std::string root = fs::absolute(cipher_dir).string();
  const std::string full = path.string();
  if (full.compare(0, root.size(), root) != 0) return full;
  size_t start = root.size();
  while (start < full.size() && full[start] == '/') ++start;
  return full.substr(start);
}

std::string DisplayName(const CipherEntry& entry) {
  return entry.plain_path.empty() ? entry.cipher_path.string() : entry.plain_path;
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

// --- headers (no key needed) -----------------------------------------------------------------

std::span<const uint8_t> CipherHeader::FixedBytes() const {
  return std::span<const uint8_t>(bytes.data(), format::kFixedSize);
}

std::span<const uint8_t, format::kKeySlotSize> CipherHeader::SlotBytes(int slot) const {
  return std::span<const uint8_t, format::kKeySlotSize>(bytes.data() + format::kKeySlotOffset[slot],
                                                        format::kKeySlotSize);
}

HeaderRead ReadCipherHeader(int fd) {
  HeaderRead r;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    r.error = errno;
    r.reason = std::string("fstat: ") + std::strerror(errno);
    return r;
  }
  r.header.cipher_size = static_cast<uint64_t>(st.st_size);
  r.header.dev = st.st_dev;
  r.header.ino = st.st_ino;
  ssize_t n = ::pread(fd, r.header.bytes.data(), r.header.bytes.size(), 0);
  if (n < 0) {
    r.error = errno;
    r.reason = std::string("read: ") + std::strerror(errno);
    return r;
  }
  const size_t got = static_cast<size_t>(n);
  const size_t magic_len = std::min(got, format::kMagic.size());
  if (got == 0) {
    r.status = HeaderStatus::kDamaged;
    r.reason = "empty file without a header (an interrupted create?)";
    return r;
  }
  if (std::memcmp(r.header.bytes.data(), format::kMagic.data(), magic_len) != 0) {
    r.status = HeaderStatus::kNotEnvelope;
    r.reason = "not an envelopefs file: stored unencrypted";
    return r;
  }
  r.status = HeaderStatus::kDamaged;
  if (got < format::kHeaderSize) {
    r.reason = "short header (" + std::to_string(got) + " of " +
               std::to_string(format::kHeaderSize) + " bytes)";
    return r;
  }
  try {
    r.header.fixed = ParseFixedHeader(r.header.bytes);
  } catch (const Error& e) {
    r.reason = e.what();
    return r;
  }
  for (int i = 0; i < 2; ++i) r.header.slots[i] = ParseKeySlot(r.header.SlotBytes(i));
  r.status = HeaderStatus::kOk;
  return r;
}

HeaderRead ReadCipherHeader(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    HeaderRead r;
    r.error = errno;
    r.reason = std::string("open: ") + std::strerror(errno);
    return r;
  }
  return ReadCipherHeader(fd.get());
}

// --- headers (with the keys) -----------------------------------------------------------------

KekTable::KekTable(const Volume& volume) {
  for (const KekInfo& info : volume.Keks()) {
    SecureBytes key;
    if (volume.FindKek(info.id, info.version, key)) {
      keks_.emplace(std::make_pair(info.id, info.version), std::move(key));
    }
  }
}

const SecureBytes* KekTable::Find(uint32_t id, uint32_t version) const {
  auto it = keks_.find({id, version});
  return it == keks_.end() ? nullptr : &it->second;
}

std::string KekLabel(uint32_t id, uint32_t version) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", id);
  return "version " + std::to_string(version) + " (id " + hex + ")";
}

Sha256Digest DekFingerprint(const SecureBytes& dek) {
  return HmacSha256(dek.span(), AsBytes(kFingerprintLabel));
}

std::optional<std::string> LengthProblem(const CipherHeader& header, const FileState* state) {
  ChunkLayout layout{header.fixed.chunk_size};
  std::optional<uint64_t> plain = layout.PlainSize(header.cipher_size);
  if (!plain) {
    return "cipher file length " + std::to_string(header.cipher_size) +
           " is not valid for any plaintext size (cut or extended)";
  }
  if (state != nullptr && state->sealed() && state->size != *plain) {
    return "cipher file length does not match its sealed size of " + std::to_string(state->size) +
           " bytes (cut or extended)";
  }
  return std::nullopt;
}

HeaderCheck CheckHeader(const CipherHeader& header, const KekTable& keks) {
  HeaderCheck check;
  const int newest = header.NewestSlot();
  std::optional<SecureBytes> dek;
  bool any_key = false;
  for (int slot : {newest, 1 - newest}) {
    const KeySlotInfo& info = header.slots[slot];
    const SecureBytes* kek = keks.Find(info.kek_id, info.kek_version);
    if (kek == nullptr) continue;
    any_key = true;
    dek = UnwrapDek(header.FixedBytes(), header.SlotBytes(slot), *kek);
    if (dek) {
      check.slot = slot;
      break;
    }
  }
  if (!dek) {
    const KeySlotInfo& info = header.slots[newest];
    check.reason = any_key ? "header does not authenticate (no key slot opens)"
                           : "needs KEK " + KekLabel(info.kek_id, info.kek_version) +
                                 ", which is retired or unknown";
    return check;
  }
  check.dek_fingerprint = DekFingerprint(*dek);
  // One locked buffer per thread: audit checks 100k headers, and every SecureBytes is an
  // mmap/mlock/munmap (with TLB shootdowns across threads).
  thread_local SecureBytes state_key(kKeySize);
  HkdfSha256(dek->span(), format::kStateKeyLabel, state_key.mutable_span());
  std::optional<FileState> best;
  for (int i = 0; i < 2; ++i) {
    auto state =
        OpenState(state_key, header.fixed.file_id,
                  std::span<const uint8_t, format::kStateSlotSize>(
                      header.bytes.data() + format::kStateSlotOffset[i], format::kStateSlotSize));
    if (state && (!best || state->counter > best->counter)) best = state;
  }
  if (!best) {
    check.reason = "state record does not authenticate";
    return check;
  }
  check.state = *best;
  if (auto problem = LengthProblem(header, &check.state)) {
    check.reason = *problem;
    return check;
  }
  check.ok = true;
  return check;
}

// --- reading plaintext -----------------------------------------------------------------------

std::shared_ptr<CipherFile> OpenCipherFile(const fs::path& path, const Volume& volume,
                                           const std::string& display_name) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) ThrowSystemError("open " + path.string());
  return CipherFile::Open(std::move(fd), volume, display_name);
}

std::string WithoutName(const std::string& message, const std::string& name) {
  const std::string prefix = name + ": ";
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
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

void CaptureDamageReports() {
  SetLogSink([](LogLevel level, const std::string& message) {
    if (message.rfind(kTamperPrefix, 0) == 0) return;  // reported by the tool itself
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    std::fprintf(stderr, "envelopectl: %s%s\n", level >= LogLevel::kWarning ? "warning: " : "",
                 message.c_str());
  });
  SetTamperHook([](const std::string&, const std::string& detail) { last_damage = detail; });
}

std::string TakeDamageReport() { return std::exchange(last_damage, std::string()); }

// --- key policy report -----------------------------------------------------------------------

std::vector<KekPolicyStatus> KeyStatuses(const Volume& volume) {
  return EvaluateKeyPolicy(volume.Keks(), volume.config().rotate_after_days, NowUnix());
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
                    {"overdue", s.overdue}});
  }
  return keys;
}

void PrintKeysTable(const std::vector<KekPolicyStatus>& statuses, uint32_t rotate_after_days) {
  std::printf("%-8s %-10s %-13s %-21s %8s  %s\n", "VERSION", "ID", "STATE", "CREATED", "AGE",
              "ROTATION DUE");
  for (const KekPolicyStatus& s : statuses) {
    std::string due = s.rotation_due ? FormatUtc(*s.rotation_due) : "-";
    if (s.overdue) due += " (OVERDUE)";
    std::printf("%-8u 0x%08x %-13s %-21s %7lldd  %s\n", s.info.version, s.info.id,
                KekStateName(s.info.state), FormatUtc(s.info.created_unix).c_str(),
                static_cast<long long>(s.age_days), due.c_str());
  }
  std::printf("rotation policy: every %u days (rotate_after_days in %s)\n", rotate_after_days,
              kConfigFileName);
}

void PrintJson(const nlohmann::json& value) {
  // Names need not be UTF-8: invalid bytes become U+FFFD rather than failing the command.
  std::cout << value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

}  // namespace envelopefs::cli
