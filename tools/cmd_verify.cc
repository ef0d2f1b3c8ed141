// envelopectl verify — reads and authenticates everything in a volume without FUSE: every name,
// every directory IV, every chunk of every file (through CipherFile, the daemon's data path) and
// every symlink target. Reports each damaged entry with its plaintext and cipher path.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/unique_fd.h"
#include "progress.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

// Reads the whole file; empty if it authenticates. Counts plaintext bytes into `bytes`.
std::string CheckFile(const CipherEntry& e, const Volume& volume, std::atomic<uint64_t>& bytes) {
  const std::string name = DisplayName(e);
  TakeDamageReport();
  try {
    auto file = OpenEntry(volume, e);
    int rc = StreamPlaintext(*file, [&](std::span<const uint8_t> piece) { bytes += piece.size(); });
    if (rc == 0) return "";
    std::string detail = TakeDamageReport();
    return detail.empty() ? std::string("read failed: ") + std::strerror(-rc) : detail;
  } catch (const Error& err) {
    return WithoutName(err.what(), name);
  }
}

std::string CheckSymlink(const CipherEntry& e, const NameTransform& names) {
  std::string stored(PATH_MAX, '\0');
  ssize_t n = readlink(e.cipher_path.c_str(), stored.data(), stored.size());
  if (n < 0) return std::string("readlink: ") + std::strerror(errno);
  stored.resize(static_cast<size_t>(n));
  return names.DecryptSymlink(stored) ? "" : "symlink target does not authenticate";
}

std::string CheckDirectory(const CipherEntry& e, const NameTransform& names) {
  UniqueFd fd(open(e.cipher_path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return std::string("open: ") + std::strerror(errno);
  try {
    names.ReadDirIvs(fd.get());
    return "";
  } catch (const Error& err) {
    return err.what();
  }
}

// Every problem of one entry, "; "-separated; empty if it is intact.
std::string CheckEntry(const CipherEntry& e, const Volume& volume, const NameTransform& names,
                       std::atomic<uint64_t>& bytes) {
  std::string problems;
  auto add = [&problems](const std::string& p) {
    if (!p.empty()) problems += (problems.empty() ? "" : "; ") + p;
  };
  if (!e.name_ok) add("name does not authenticate");
  if (e.type == DT_REG) add(CheckFile(e, volume, bytes));
  if (e.type == DT_LNK) add(CheckSymlink(e, names));
  if (e.type == DT_DIR) add(CheckDirectory(e, names));
  return problems;
}

// The audit log never holds plaintext names: a detail that mentions one names the cipher path.
std::string WithoutPlaintextName(std::string detail, const CipherEntry& e) {
  if (e.plain_path.empty()) return detail;
  for (size_t at = detail.find(e.plain_path); at != std::string::npos;
       at = detail.find(e.plain_path, at + e.cipher_path.string().size())) {
    detail.replace(at, e.plain_path.size(), e.cipher_path.string());
  }
  return detail;
}

nlohmann::json DamagedJson(const CipherEntry& e, const std::string& reason) {
  return {{"path", e.plain_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.plain_path)},
          {"cipher_path", e.cipher_path.string()},
          {"type", TypeName(e.type)},
          {"reason", reason}};
}

}  // namespace

int RunVerify(const Args& args) {
  ExpectArgs(args, 1, 1, "verify CIPHERDIR [--json] [--jobs N]");
  const fs::path dir = args.words[1];
  RequireVolumeRoot(dir);
  auto volume = OpenVolume(args, dir);
  CaptureDamageReports();
  NameTransform names = MakeNameTransform(*volume);
  const std::vector<CipherEntry> entries = CollectEntries(dir, names);
  std::vector<std::string> problems(entries.size());
  std::atomic<uint64_t> bytes{0};
  {
    Progress progress(Progress::WantedFor(args), "entries", entries.size());
    ParallelFor(entries.size(), JobCount(args), [&](size_t i) {
      problems[i] = CheckEntry(entries[i], *volume, names, bytes);
      progress.Add();
    });
  }
  uint64_t files = 0;
  nlohmann::json damaged = nlohmann::json::array();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].type == DT_REG) ++files;
    if (problems[i].empty()) continue;
    damaged.push_back(DamagedJson(entries[i], problems[i]));
    AppendAuditEvent(dir, volume->config(), "tamper_detected",
                     {{"file", entries[i].cipher_path.string()},
                      {"detail", WithoutPlaintextName(problems[i], entries[i])},
                      {"found_by", "verify"}});
    if (!args.json) {
      std::printf("DAMAGED %s (%s): %s\n",
                  entries[i].plain_path.empty() ? "?" : entries[i].plain_path.c_str(),
                  entries[i].cipher_path.c_str(), problems[i].c_str());
    }
  }
  if (args.json) {
    PrintJson({{"entries", entries.size()},
               {"files", files},
               {"bytes", bytes.load()},
               {"damaged", damaged},
               {"ok", damaged.empty()}});
  } else if (!args.quiet || !damaged.empty()) {
    std::printf("verified %zu entries (%llu files, %llu bytes): %zu damaged\n", entries.size(),
                static_cast<unsigned long long>(files),
                static_cast<unsigned long long>(bytes.load()), damaged.size());
  }
  return damaged.empty() ? kExitOk : kExitDamaged;
}

}  // namespace envelopefs::cli
