// envelopectl verify — reads and authenticates everything in a volume without FUSE: every name,
// every directory IV, every chunk of every file (through CipherFile, the daemon's data path),
// every symlink target and every extended attribute value (bound to its file or directory in
// format 2). Reports each damaged entry with its plaintext and cipher path. Names are bytes:
// JSON output replaces invalid UTF-8 (PrintJson), the audit log and messages escape it.
// Streams the walk (ParallelWalk): only the entries it reports are kept.
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/beneath.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/long_symlink.h"
#include "envelopefs/parallel_walk.h"
#include "envelopefs/unique_fd.h"
#include "progress.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

constexpr char kUnsealedReason[] =
    "unsealed: its last write was interrupted, or an older state was put back; its length and "
    "chunk versions are not proven (write it again to seal it, once its content is checked)";

// Reads the whole file; empty if it authenticates. Counts plaintext bytes into `bytes`; sets
// `*unsealed` when the file's last write was interrupted (or an older state was put back).
std::string CheckFile(const CipherEntry& e, const Volume& volume, std::atomic<uint64_t>& bytes,
                      bool* unsealed) {
  DamageCollector damage;  // outlives the file
  try {
    auto file = OpenEntry(volume, e, damage);
    *unsealed = !file->sealed();
    int rc = StreamPlaintext(*file, [&](std::span<const uint8_t> piece) { bytes += piece.size(); });
    // Every chunk authenticated; a torn or tampered copy of a header record is still reported.
    if (rc == 0) return damage.TakeCopyDamage();
    std::string detail = damage.Take();
    return detail.empty() ? std::string("read failed: ") + std::strerror(-rc) : detail;
  } catch (const Error& err) {
    return err.what();  // OpenEntry's messages name no file: the report names it
  }
}

std::string CheckSymlink(const CipherEntry& e, const Volume& volume, const NameTransform& names) {
  std::string_view leaf;
  int parent = OpenParentBeneath(volume.root_fd(), e.relative, &leaf);
  if (parent < 0) return std::string("open: ") + std::strerror(-parent);
  UniqueFd owned(parent);
  auto stored = ReadStoredTarget(parent, std::string(leaf));
  if (!stored) return std::string("readlink: ") + std::strerror(errno);
  std::string problem;
  return ReadBackingSymlink(names, volume.root_fd(), *stored, &problem) ? "" : problem;
}

std::string CheckDirectory(const CipherEntry& e, const Volume& volume, const NameTransform& names) {
  int raw = OpenBeneath(volume.root_fd(), e.relative, O_RDONLY | O_DIRECTORY);
  if (raw < 0) return std::string("open: ") + std::strerror(-raw);
  UniqueFd fd(raw);
  try {
    names.ReadDirIvs(fd.get());
    return "";
  } catch (const Error& err) {
    return err.what();
  }
}

// The list of extended attribute names of `fd` (NUL-separated); false with errno on failure.
bool ListXattrs(int fd, std::vector<char>* list) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = flistxattr(fd, nullptr, 0);
    if (n < 0) return false;
    list->resize(static_cast<size_t>(n));
    if (n == 0) return true;
    n = flistxattr(fd, list->data(), list->size());
    if (n >= 0) {
      list->resize(static_cast<size_t>(n));
      return true;
    }
    if (errno != ERANGE) return false;  // ERANGE: the list grew in between; ask again
  }
  return false;
}

// The value of attribute `name` of `fd`; false with errno on failure.
bool GetXattr(int fd, const std::string& name, std::vector<uint8_t>* value) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = fgetxattr(fd, name.c_str(), nullptr, 0);
    if (n < 0) return false;
    value->resize(static_cast<size_t>(n));
    if (n == 0) return true;
    n = fgetxattr(fd, name.c_str(), value->data(), value->size());
    if (n >= 0) {
      value->resize(static_cast<size_t>(n));
      return true;
    }
    if (errno != ERANGE) return false;
  }
  return false;
}

// What the xattr values of the file or directory `fd` are bound to, as the daemon computes it
// (a file's authenticated file id, a directory's primary IV; nothing in format 1). False with
// `why` when it cannot be known (the file or directory check reports that damage itself).
bool XattrOwner(int fd, bool is_dir, const Volume& volume, const NameTransform& names,
                std::optional<XattrOwnerId>* owner, std::string* why) {
  owner->reset();
  if (!names.BindsXattrsToObjects()) return true;
  if (is_dir) {
    try {
      *owner = names.DirectoryXattrOwner(names.ReadDirIvs(fd));
      return true;
    } catch (const Error& err) {
      *why = err.what();
      return false;
    }
  }
  HeaderRead header = ReadHeader(fd);
  if (header.status != HeaderStatus::kOk) {
    *why = header.reason;
    return false;
  }
  OpenedHeader opened = OpenHeader(header, volume, /*check_length=*/false);
  if (!opened.ok) {
    *why = opened.problem;
    return false;
  }
  *owner = header.fixed.file_id;
  return true;
}

// Every envelopefs extended attribute value of the regular file or directory `fd` must
// authenticate. user.* attributes whose names are not envelopefs names belong to some other
// program (the daemon hides them too) and are skipped.
std::string CheckXattrsOf(int fd, bool is_dir, const Volume& volume, const NameTransform& names) {
  std::vector<char> list;
  if (!ListXattrs(fd, &list)) {
    if (errno == ENOTSUP) return "";  // the backing file system has no xattrs at all
    return std::string("listxattr: ") + std::strerror(errno);
  }
  std::string problems;
  auto add = [&problems](const std::string& p) { problems += (problems.empty() ? "" : "; ") + p; };
  std::optional<XattrOwnerId> owner;
  bool owner_known = false;  // looked up for the first value
  for (size_t pos = 0; pos < list.size();) {
    std::string backing(list.data() + pos, strnlen(list.data() + pos, list.size() - pos));
    pos += backing.size() + 1;
    if (!names.FromBackingXattrName(backing)) continue;
    std::vector<uint8_t> value;
    if (!GetXattr(fd, backing, &value)) {
      if (errno == ENODATA) continue;  // removed in between
      add("extended attribute " + backing + ": " + std::strerror(errno));
      continue;
    }
    if (!owner_known) {
      std::string why;
      if (!XattrOwner(fd, is_dir, volume, names, &owner, &why)) {
        add("extended attributes not checked (" + why + ")");
        return problems;
      }
      owner_known = true;
    }
    if (!names.OpenXattrValue(backing, owner, value)) {
      add("extended attribute " + backing + ": value does not authenticate");
    }
  }
  return problems;
}

std::string CheckXattrs(const CipherEntry& e, const Volume& volume, const NameTransform& names) {
  const bool is_dir = e.type == DT_DIR;
  // Never a FIFO or device planted in place of a file (it could hang the check).
  int fd = is_dir ? OpenBeneath(volume.root_fd(), e.relative, O_RDONLY | O_DIRECTORY)
                  : OpenRegularBeneath(volume.root_fd(), e.relative, O_RDONLY);
  if (fd < 0) return "";  // the file or directory check reports why it cannot be opened
  UniqueFd owned(fd);
  return CheckXattrsOf(fd, is_dir, volume, names);
}

// Every problem of one entry, "; "-separated; empty if it is intact.
std::string CheckEntry(const CipherEntry& e, const Volume& volume, const NameTransform& names,
                       std::atomic<uint64_t>& bytes, bool* unsealed) {
  std::string problems;
  auto add = [&problems](const std::string& p) {
    if (!p.empty()) problems += (problems.empty() ? "" : "; ") + p;
  };
  if (!e.name_ok) add("name does not authenticate");
  if (e.type == DT_REG) add(CheckFile(e, volume, bytes, unsealed));
  if (e.type == DT_LNK) add(CheckSymlink(e, volume, names));
  if (e.type == DT_DIR) add(CheckDirectory(e, volume, names));
  if (e.type == DT_REG || e.type == DT_DIR) add(CheckXattrs(e, volume, names));
  return problems;
}

nlohmann::json DamagedJson(const CipherEntry& e, const std::string& reason) {
  return {{"path", e.plain_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.plain_path)},
          {"cipher_path", e.cipher_path},
          {"type", TypeName(e.type)},
          {"reason", reason}};
}

// An entry with something to report: damaged (problem) or unsealed, at its walk index.
struct Finding {
  uint64_t index = 0;
  CipherEntry entry;
  std::string problem;
  bool unsealed = false;
};

// The workers' findings in walk order.
std::vector<Finding> MergeFindings(std::vector<std::vector<Finding>>& per_worker) {
  std::vector<Finding> all;
  for (std::vector<Finding>& part : per_worker) {
    for (Finding& f : part) all.push_back(std::move(f));
    std::vector<Finding>().swap(part);
  }
  std::sort(all.begin(), all.end(),
            [](const Finding& a, const Finding& b) { return a.index < b.index; });
  return all;
}

}  // namespace

int RunVerify(const Args& args) {
  ExpectArgs(args, 1, 1, "verify CIPHERDIR [--json] [--jobs N]");
  const fs::path dir = args.words[1];
  RequireVolumeRoot(dir);
  auto volume = OpenVolume(args, dir, /*log_unlock=*/false);
  UseToolLogSink();
  NameTransform names = MakeNameTransform(*volume);
  // Streamed: only the entries with something to report are kept (a few), with their walk
  // index, and reported in walk order once every entry was checked.
  const unsigned jobs = JobCount(args);
  std::vector<std::vector<Finding>> found(jobs);
  std::vector<uint64_t> files_of(jobs, 0);
  std::atomic<uint64_t> bytes{0};
  uint64_t entry_count = 0;
  {
    // On a terminal, a first walk counts the entries for the bar (it keeps nothing).
    const bool bar = Progress::WantedFor(args);
    Progress progress(bar, "entries", bar ? CountEntries(dir, names, nullptr) : 0);
    entry_count =
        ParallelWalk(dir, names, {jobs, kWalkQueueCapacity}, nullptr,
                     [&](unsigned worker, const CipherEntry& e, uint64_t index) {
                       bool u = false;
                       std::string problem = CheckEntry(e, *volume, names, bytes, &u);
                       if (e.type == DT_REG) ++files_of[worker];
                       const bool unsealed = u && problem.empty();
                       if (!problem.empty() || unsealed) {
                         found[worker].push_back({index, e, std::move(problem), unsealed});
                       }
                       progress.Add();
                     });
  }
  std::vector<Finding> findings = MergeFindings(found);
  // The root directory is no entry, but its extended attributes are checked like any other.
  CipherEntry root;
  root.cipher_path = fs::absolute(dir).string();
  root.plain_path = "/";
  root.type = DT_DIR;
  std::string root_problems;
  {
    UniqueFd fd(openat(volume->root_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    root_problems = fd.valid() ? CheckXattrsOf(fd.get(), /*is_dir=*/true, *volume, names)
                               : std::string("open: ") + std::strerror(errno);
  }
  uint64_t files = 0;
  for (uint64_t n : files_of) files += n;
  nlohmann::json damaged = nlohmann::json::array();
  // A problem names no plaintext (files are opened without a display name, and names, IVs and
  // attributes are reported by their cipher names), so it goes to the audit log as it is.
  auto report = [&](const CipherEntry& e, const std::string& problem) {
    damaged.push_back(DamagedJson(e, problem));
    AppendTamperEvent(*volume, e.cipher_path, problem, "verify");
    if (!args.json) {
      // The cipher path is the attacker's choice: escaped, so it cannot drive the terminal.
      std::printf("DAMAGED %s (%s): %s\n", e.plain_path.empty() ? "?" : e.plain_path.c_str(),
                  EscapeName(e.cipher_path).c_str(), EscapeName(problem).c_str());
    }
  };
  if (!root_problems.empty()) report(root, root_problems);
  nlohmann::json unproven = nlohmann::json::array();
  for (const Finding& f : findings) {
    if (f.unsealed) {
      // Every chunk authenticated, but the file is not sealed: its last write was interrupted
      // (a crash), or an older state of its header was put back together with a cut or a
      // rolled-back chunk. Nothing proves it complete until it is written again.
      unproven.push_back(DamagedJson(f.entry, kUnsealedReason));
      if (!args.json) {
        std::printf("UNSEALED %s (%s): %s\n",
                    f.entry.plain_path.empty() ? "?" : f.entry.plain_path.c_str(),
                    EscapeName(f.entry.cipher_path).c_str(), kUnsealedReason);
      }
    }
    if (f.problem.empty()) continue;
    report(f.entry, f.problem);
  }
  const bool ok = damaged.empty() && unproven.empty();
  if (args.json) {
    PrintJson({{"entries", entry_count},
               {"files", files},
               {"bytes", bytes.load()},
               {"damaged", damaged},
               {"unsealed", unproven},
               {"ok", ok}});
  } else if (!args.quiet || !ok) {
    std::printf("verified %llu entries (%llu files, %llu bytes): %zu damaged, %zu unsealed\n",
                static_cast<unsigned long long>(entry_count),
                static_cast<unsigned long long>(files),
                static_cast<unsigned long long>(bytes.load()), damaged.size(), unproven.size());
  }
  return ok ? kExitOk : kExitDamaged;
}

}  // namespace envelopefs::cli
