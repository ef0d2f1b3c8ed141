// envelopectl decrypt — restores plaintext without FUSE, safely against a hostile cipher dir: one
// cipher file to standard output or to a new file, or a whole volume into a new (or empty)
// directory. Nothing is opened by path: cipher entries are opened beneath the volume's root fd
// and output entries beneath the -o root fd (mkdirat, openat with O_EXCL, symlinkat, renameat2
// with RENAME_NOREPLACE), one component at a time without following any symlink, so nothing is
// read from or written outside either tree. Two cipher entries with the same plaintext path are
// reported and only the first is restored (a duplicate directory's children are not merged into
// the first one). Device nodes, FIFOs and sockets are skipped, set-uid/set-gid bits dropped, and
// owners applied only with --same-owner as root. Only authenticated plaintext is ever left
// behind: each file is written under a random temp name and renamed into place once every chunk
// of it authenticated; on any failure the temp file is removed.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "cli.h"
#include "common.h"
#include "envelopefs/beneath.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/error_mapping.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/long_symlink.h"
#include "envelopefs/unique_fd.h"
#include "progress.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

constexpr char kOutputTempPrefix[] = ".envelopectl-";
constexpr int kTempAttempts = 16;

struct Failure {
  ErrorKind kind;
  std::string reason;
};

Failure SystemFailure(const std::string& what, int error) {
  return {ErrorKind::kIo, what + ": " + std::strerror(error)};
}

// A failed OpenBeneath/OpenParentBeneath: a symlink on the way is tampering, not an I/O error.
Failure BeneathFailure(const std::string& what, int error) {
  if (error == ELOOP) {
    return {ErrorKind::kAuthentication,
            what + ": a symbolic link where a directory or file belongs (not followed)"};
  }
  return SystemFailure(what, error);
}

// "a/b/c" -> "a/b"; "c" -> "".
std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// --- metadata policy -------------------------------------------------------------------------

// Permissions as stored, without set-uid/set-gid; the sticky bit on directories only.
mode_t RestoredMode(const struct stat& st) {
  return st.st_mode & (S_ISDIR(st.st_mode) ? 01777 : 0777);
}

// Owner (only if `same_owner`), mode and times of `st` onto the open file or directory `fd`.
// Returns 0 or an errno.
int ApplyMetadata(int fd, const struct stat& st, bool same_owner) {
  if (same_owner && ::fchown(fd, st.st_uid, st.st_gid) != 0) return errno;
  if (::fchmod(fd, RestoredMode(st)) != 0) return errno;
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  return ::futimens(fd, times) == 0 ? 0 : errno;
}

// The same for the symlink `name` in `dir_fd` (symlinks have no mode of their own).
int ApplySymlinkMetadata(int dir_fd, const std::string& name, const struct stat& st,
                         bool same_owner) {
  if (same_owner &&
      ::fchownat(dir_fd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno;
  }
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  return ::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

// --- locating entries beneath a directory fd -------------------------------------------------

// The directory holding `relative` below `root_fd` (reached without following any symlink) and
// the last component; `error` is an errno if that failed.
struct Located {
  UniqueFd dir;
  std::string leaf;
  int error = 0;
};

Located Locate(int root_fd, const std::string& relative) {
  Located at;
  std::string_view leaf;
  int fd = OpenParentBeneath(root_fd, relative, &leaf);
  if (fd < 0) {
    at.error = -fd;
    return at;
  }
  at.dir.reset(fd);
  at.leaf = std::string(leaf);
  return at;
}

// Opens the cipher file `relative` beneath the volume root for reading (no symlink followed) and
// stats it. Only a regular file is opened (OpenRegularFileAt): never a device node or FIFO,
// nor blocked on. Throws Error.
std::shared_ptr<CipherFile> OpenCipherBeneath(const Volume& volume, const std::string& relative,
                                              const std::string& display, struct stat* st,
                                              DamageCollector& damage) {
  Located at = Locate(volume.root_fd(), relative);
  if (at.error != 0) {
    Failure f = BeneathFailure("open", at.error);
    throw Error(f.kind, Named(display, f.reason));
  }
  int raw = OpenRegularFileAt(at.dir.get(), at.leaf, O_RDONLY);
  if (raw == -EINVAL) {
    throw Error(ErrorKind::kAuthentication, Named(display, "not a regular file in the cipher dir"));
  }
  if (raw < 0) {
    errno = -raw;
    ThrowSystemError(Named(display, "open"));
  }
  UniqueFd fd(raw);
  if (::fstat(fd.get(), st) != 0) ThrowSystemError(Named(display, "fstat"));
  return CipherFile::Open(std::move(fd), volume, display, damage);
}

// --- writing one output file -----------------------------------------------------------------

// Renames `from` to `to` in `dir_fd` unless `to` exists; 0 or an errno (EEXIST if it does).
int RenameNoReplace(int dir_fd, const std::string& from, const std::string& to) {
  if (::renameat2(dir_fd, from.c_str(), dir_fd, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  // A file system without RENAME_NOREPLACE: link(2) never replaces either.
  if (::linkat(dir_fd, from.c_str(), dir_fd, to.c_str(), 0) != 0) return errno;
  ::unlinkat(dir_fd, from.c_str(), 0);
  return 0;
}

// A new regular file `leaf` in the directory `dir`: written under a short random temp name
// (created O_EXCL, 0600) and renamed into place by Commit() without replacing anything; the temp
// file is removed unless committed.
class NewFile {
 public:
  NewFile(UniqueFd dir, std::string leaf) : dir_(std::move(dir)), leaf_(std::move(leaf)) {
    for (int attempt = 0; attempt < kTempAttempts && !fd_.valid(); ++attempt) {
      uint8_t random[8];
      RandomBytes(random);
      temp_ = kOutputTempPrefix + ToHex(random);
      fd_.reset(::openat(dir_.get(), temp_.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd_.valid() && errno != EEXIST) break;
    }
    if (!fd_.valid()) ThrowSystemError("create a temp file for " + leaf_);
  }
  ~NewFile() {
    if (!committed_) ::unlinkat(dir_.get(), temp_.c_str(), 0);
  }
  NewFile(const NewFile&) = delete;
  NewFile& operator=(const NewFile&) = delete;

  int fd() const { return fd_.get(); }
  // 0 or an errno (EEXIST: the name is taken, nothing was replaced).
  int Commit() {
    int error = RenameNoReplace(dir_.get(), temp_, leaf_);
    committed_ = error == 0;
    return error;
  }

 private:
  UniqueFd dir_;
  std::string leaf_, temp_;
  UniqueFd fd_;
  bool committed_ = false;
};

// Streams the authenticated plaintext of `file` (opened with `damage` as its reporter) into
// `fd`; a Failure if a chunk fails. Each piece written counts one step of `progress` (if given).
std::optional<Failure> CopyPlaintext(CipherFile& file, DamageCollector& damage, int fd,
                                     const std::string& what, Progress* progress = nullptr) {
  damage.Take();
  int rc = StreamPlaintext(file, [&](std::span<const uint8_t> piece) {
    WriteAll(fd, piece, what);
    if (progress != nullptr) progress->Add();
  });
  if (rc == 0) return std::nullopt;
  std::string detail = damage.Take();
  if (detail.empty()) detail = std::strerror(-rc);
  return Failure{rc == -EIO ? ErrorKind::kAuthentication : ErrorKind::kIo, detail};
}

// Writes the plaintext of `file` (whose cipher file has metadata `st`) as the new file `leaf`
// of `dir`. Throws Error for failures before any plaintext is written.
std::optional<Failure> WriteRestoredFile(CipherFile& file, DamageCollector& damage,
                                         const struct stat& st, UniqueFd dir,
                                         const std::string& leaf, bool same_owner,
                                         Progress* progress = nullptr) {
  NewFile out(std::move(dir), leaf);
  if (auto failure = CopyPlaintext(file, damage, out.fd(), leaf, progress)) return failure;
  if (int error = ApplyMetadata(out.fd(), st, same_owner)) {
    return SystemFailure("set owner, mode or times", error);
  }
  if (int error = out.Commit()) {
    if (error == EEXIST) return Failure{ErrorKind::kState, "already exists: not overwritten"};
    return SystemFailure("rename into place", error);
  }
  return std::nullopt;
}

// --- one file --------------------------------------------------------------------------------

// --same-owner takes effect only as root (a warning otherwise).
bool SameOwner(const Args& args) {
  if (!args.same_owner) return false;
  if (::geteuid() == 0) return true;
  std::fprintf(stderr, "envelopectl: warning: --same-owner needs root; ignored\n");
  return false;
}

// Where single-file decrypt writes: OUT's directory (opened once, as the user named it) and its
// last component, which must not exist yet.
Located ReserveOutputFile(const std::string& out) {
  const fs::path path(out);
  const std::string leaf = path.filename().string();
  if (leaf.empty() || leaf == "." || leaf == "..") {
    throw Error(ErrorKind::kUsage, "-o " + out + ": not a file name");
  }
  const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  Located at;
  at.dir.reset(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!at.dir.valid()) ThrowSystemError("open " + parent.string());
  struct stat st;
  if (::fstatat(at.dir.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    throw Error(ErrorKind::kState, out + " already exists: not overwritten");
  }
  at.leaf = leaf;
  return at;
}

// `cipher` relative to the volume root `root` (both made absolute, lexically).
std::string PathInVolume(const fs::path& root, const fs::path& cipher) {
  const fs::path relative = fs::absolute(cipher).lexically_normal().lexically_relative(root);
  const std::string text = relative.string();
  if (text.empty() || text == "." || text.rfind("..", 0) == 0) {
    throw Error(ErrorKind::kUsage, cipher.string() + ": not a file inside the volume");
  }
  return text;
}

int DecryptOneFile(const Args& args, const fs::path& cipher) {
  const bool to_stdout = !args.output || *args.output == "-";
  std::optional<Located> out;
  if (!to_stdout) out = ReserveOutputFile(*args.output);  // before asking for a key
  const bool same_owner = SameOwner(args);
  const fs::path root = FindVolumeRoot(cipher);
  auto volume = OpenVolume(args, root);
  UseToolLogSink();
  const std::string display = cipher.string();
  struct stat st;
  DamageCollector damage;
  auto file = OpenCipherBeneath(*volume, PathInVolume(root, cipher), display, &st, damage);
  // One step per kReadStep (1 MiB) piece.
  Progress progress(Progress::WantedFor(args), "MiB", (file->size() + kReadStep - 1) / kReadStep);
  std::optional<Failure> failure;
  if (to_stdout) {
    failure = CopyPlaintext(*file, damage, STDOUT_FILENO, "standard output", &progress);
  } else {
    failure =
        WriteRestoredFile(*file, damage, st, std::move(out->dir), out->leaf, same_owner, &progress);
    if (failure && failure->kind == ErrorKind::kState) {
      throw Error(failure->kind, *args.output + " " + failure->reason);
    }
  }
  progress.Finish();
  if (failure) throw Error(failure->kind, display + ": " + failure->reason);
  return kExitOk;
}

// --- a whole volume --------------------------------------------------------------------------

bool IsEmptyDirectory(int dir_fd) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowSystemError("open the output directory");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    ThrowSystemError("read the output directory");
  }
  bool empty = true;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") empty = false;
  }
  ::closedir(dir);
  return empty;
}

// Opens (creating it 0700 if missing) the restore target, which must be an empty directory and
// not a symlink. Throws Error.
UniqueFd OpenOutputRoot(const std::string& out) {
  if (::mkdir(out.c_str(), 0700) != 0 && errno != EEXIST) ThrowSystemError("mkdir " + out);
  UniqueFd fd(::open(out.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() && (errno == ENOTDIR || errno == ELOOP)) {
    throw Error(ErrorKind::kState,
                out + " exists and is not a directory (a symbolic link is not followed)");
  }
  if (!fd.valid()) ThrowSystemError("open " + out);
  if (!IsEmptyDirectory(fd.get())) {
    throw Error(ErrorKind::kState, out + " exists and is not an empty directory");
  }
  return fd;
}

// What a special file is called in the "skipped" report; nullptr for the types restored.
const char* SpecialKind(unsigned char type) {
  switch (type) {
    case DT_CHR:
    case DT_BLK:
      return "device node";
    case DT_FIFO:
      return "FIFO";
    case DT_SOCK:
      return "socket";
    default:
      return nullptr;
  }
}

class TreeRestore {
 public:
  TreeRestore(const Args& args, const Volume& volume, std::string out)
      : args_(args),
        volume_(volume),
        names_(MakeNameTransform(volume)),
        out_(std::move(out)),
        same_owner_(SameOwner(args)) {}

  int Run() {
    out_fd_ = OpenOutputRoot(out_);
    entries_ = CollectEntries(volume_.cipher_dir(), names_);
    dir_owner_[""] = "";  // the output root holds the cipher root's entries
    for (const CipherEntry& e : entries_) Place(e);
    Progress progress(Progress::WantedFor(args_), "files", files_.size());
    progress_ = &progress;
    ParallelFor(files_.size(), JobCount(args_), [&](size_t i) {
      RestoreFile(*files_[i]);
      progress.Add();
    });
    progress.Finish();
    progress_ = nullptr;
    // Directory modes and times last (children change a directory's mtime), deepest first.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      FinishDirectory(*it->first, it->second);
    }
    return Summarize();
  }

 private:
  // --- reporting ---
  // Erases the progress bar's line (if one is drawn) so that a message starts on a clean line.
  const char* BarEraser() const { return progress_ != nullptr ? progress_->LineEraser() : ""; }

  void Report(const CipherEntry& e, const Failure& f, const char* what = "not restored") {
    std::lock_guard<std::mutex> lock(mu_);
    damaged_ = damaged_ || ExitCodeFor(f.kind) == kExitDamaged;
    if (!first_kind_) first_kind_ = f.kind;
    // Names are bytes, and cipher names the attacker's choice: escaped for the terminal.
    std::fprintf(stderr, "%senvelopectl: %s: %s (%s): %s\n", BarEraser(), what,
                 e.plain_path.empty() ? "?" : EscapeName(e.plain_path).c_str(),
                 EscapeName(e.cipher_path).c_str(), EscapeName(f.reason).c_str());
    ++failed_;
  }

  void Skip(const CipherEntry& e, const char* kind) {
    std::fprintf(stderr, "envelopectl: skipped: %s: %s (not restored)\n",
                 EscapeName(e.plain_path).c_str(), kind);
    ++skipped_;
  }

  // --- planning, in walk order (a directory before its entries) ---
  void Place(const CipherEntry& e) {
    if (!e.name_ok) return Report(e, {ErrorKind::kAuthentication, "name does not authenticate"});
    if (!ParentIsOurs(e)) return;
    if (const char* kind = SpecialKind(e.type)) return Skip(e, kind);
    if (!Claim(e)) return;
    switch (e.type) {
      case DT_DIR:
        return CreateDirectory(e);
      case DT_LNK:
        return CreateSymlink(e);
      case DT_REG:
        return files_.push_back(&e);
      default:
        return Report(e, {ErrorKind::kIo, "unknown file type"});
    }
  }

  // True if the plaintext parent of `e` was restored from e's own cipher parent; reports why not
  // otherwise (the parent failed, or is a duplicate restored from another cipher directory).
  bool ParentIsOurs(const CipherEntry& e) {
    const std::string plain_parent = ParentOf(e.plain_path);
    const std::string cipher_parent = ParentOf(e.relative);
    auto it = dir_owner_.find(plain_parent);
    if (it != dir_owner_.end() && it->second == cipher_parent) return true;
    auto claim = claims_.find(plain_parent);
    if (claim != claims_.end() && claim->second->relative != cipher_parent) {
      Report(e, {ErrorKind::kAuthentication, "its parent " + plain_parent +
                                                 " is a duplicate name (restored from " +
                                                 claim->second->cipher_path + ")"});
    } else {
      Report(e, {ErrorKind::kIo, "its directory " + plain_parent + " was not restored"});
    }
    return false;
  }

  // Records `e` as the owner of its plaintext path; false (reported) if another entry has it.
  bool Claim(const CipherEntry& e) {
    auto [it, inserted] = claims_.emplace(e.plain_path, &e);
    if (inserted) return true;
    std::fprintf(stderr,
                 "envelopectl: duplicate name %s: %s (restored) and %s (not restored) decrypt to "
                 "the same path\n",
                 EscapeName(e.plain_path).c_str(), EscapeName(it->second->cipher_path).c_str(),
                 EscapeName(e.cipher_path).c_str());
    ++duplicates_;
    damaged_ = true;
    return false;
  }

  // The cipher entry's own metadata (no symlink followed); a Failure if its type changed since
  // the walk.
  std::optional<Failure> StatCipher(const CipherEntry& e, struct stat* st, Located* at) {
    *at = Locate(volume_.root_fd(), e.relative);
    if (at->error != 0) return BeneathFailure("open", at->error);
    if (::fstatat(at->dir.get(), at->leaf.c_str(), st, AT_SYMLINK_NOFOLLOW) != 0) {
      return SystemFailure("lstat", errno);
    }
    if (IFTODT(st->st_mode) != e.type) {
      return Failure{ErrorKind::kAuthentication, "changed type in the cipher dir during restore"};
    }
    return std::nullopt;
  }

  void CreateDirectory(const CipherEntry& e) {
    struct stat st;
    Located cipher;
    if (auto f = StatCipher(e, &st, &cipher)) return Report(e, *f);
    Located out = Locate(out_fd_.get(), e.plain_path);
    if (out.error != 0) return Report(e, BeneathFailure("open the output directory", out.error));
    if (::mkdirat(out.dir.get(), out.leaf.c_str(), 0700) != 0) {
      return Report(e, SystemFailure("mkdir", errno));
    }
    dir_owner_[e.plain_path] = e.relative;
    dirs_.emplace_back(&e, st);
  }

  // The decrypted target of the cipher symlink `e` (in `cipher`), or a Failure.
  std::optional<Failure> ReadTarget(const Located& cipher, std::string* target) {
    auto stored = ReadStoredTarget(cipher.dir.get(), cipher.leaf);
    if (!stored) return SystemFailure("readlink", errno);
    std::string problem;
    std::optional<std::string> link =
        ReadBackingSymlink(names_, volume_.root_fd(), *stored, &problem);
    if (!link) return Failure{ErrorKind::kAuthentication, problem};
    *target = std::move(*link);
    return std::nullopt;
  }

  void CreateSymlink(const CipherEntry& e) {
    struct stat st;
    Located cipher;
    std::string target;
    if (auto f = StatCipher(e, &st, &cipher)) return Report(e, *f);
    if (auto f = ReadTarget(cipher, &target)) return Report(e, *f);
    Located out = Locate(out_fd_.get(), e.plain_path);
    if (out.error != 0) return Report(e, BeneathFailure("open the output directory", out.error));
    if (::symlinkat(target.c_str(), out.dir.get(), out.leaf.c_str()) != 0) {
      return Report(e, SystemFailure("symlink", errno));
    }
    ++restored_links_;
    if (int error = ApplySymlinkMetadata(out.dir.get(), out.leaf, st, same_owner_)) {
      Report(e, SystemFailure("set owner or times", error), "metadata not restored");
    }
  }

  // --- files, on several threads ---
  void RestoreFile(const CipherEntry& e) {
    DamageCollector damage;  // outlives the file
    try {
      struct stat st;
      // No name in its messages: Report() shows the entry's names itself.
      auto file = OpenCipherBeneath(volume_, e.relative, "", &st, damage);
      Located out = Locate(out_fd_.get(), e.plain_path);
      if (out.error != 0) return Report(e, BeneathFailure("open the output directory", out.error));
      if (auto f =
              WriteRestoredFile(*file, damage, st, std::move(out.dir), out.leaf, same_owner_)) {
        return Report(e, *f);
      }
      ++restored_files_;
    } catch (const Error& ex) {
      Report(e, {ex.kind(), ex.what()});
    }
  }

  // --- directories, last ---
  void FinishDirectory(const CipherEntry& e, const struct stat& st) {
    int fd = OpenBeneath(out_fd_.get(), e.plain_path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return Report(e, BeneathFailure("open", -fd), "metadata not restored");
    UniqueFd owned(fd);
    if (int error = ApplyMetadata(fd, st, same_owner_)) {
      Report(e, SystemFailure("set owner, mode or times", error), "metadata not restored");
    }
  }

  int Summarize() {
    if (!args_.quiet) {
      std::printf(
          "restored %llu files, %zu directories, %llu symlinks to %s; %llu skipped (device "
          "nodes, FIFOs, sockets), %llu duplicate names, %llu failed\n",
          static_cast<unsigned long long>(restored_files_.load()), dirs_.size(),
          static_cast<unsigned long long>(restored_links_), out_.c_str(),
          static_cast<unsigned long long>(skipped_), static_cast<unsigned long long>(duplicates_),
          static_cast<unsigned long long>(failed_));
    }
    if (damaged_) return kExitDamaged;
    return first_kind_ ? ExitCodeFor(*first_kind_) : kExitOk;
  }

  const Args& args_;
  const Volume& volume_;
  const NameTransform names_;
  const std::string out_;
  const bool same_owner_;
  UniqueFd out_fd_;
  Progress* progress_ = nullptr;  // while files are restored
  std::vector<CipherEntry> entries_;
  // Plaintext path -> the cipher entry restored there (first come), and for each restored
  // directory the relative cipher path of the directory it came from ("" for the root).
  std::unordered_map<std::string, const CipherEntry*> claims_;
  std::unordered_map<std::string, std::string> dir_owner_;
  std::vector<const CipherEntry*> files_;
  std::vector<std::pair<const CipherEntry*, struct stat>> dirs_;
  std::atomic<uint64_t> restored_files_{0};
  uint64_t restored_links_ = 0, skipped_ = 0, duplicates_ = 0;
  std::mutex mu_;  // guards what Report() changes (files are restored on several threads)
  uint64_t failed_ = 0;
  bool damaged_ = false;
  std::optional<ErrorKind> first_kind_;
};

}  // namespace

int RunDecrypt(const Args& args) {
  ExpectArgs(args, 1, 1, "decrypt CIPHERFILE [-o OUT] | decrypt CIPHERDIR -o DIR");
  const fs::path source = args.words[1];
  std::error_code ec;
  if (!fs::is_directory(source, ec)) return DecryptOneFile(args, source);
  RequireVolumeRoot(source);
  if (!args.output) throw Error(ErrorKind::kUsage, "decrypt CIPHERDIR needs -o DIR");
  auto volume = OpenVolume(args, source);
  UseToolLogSink();
  return TreeRestore(args, *volume, *args.output).Run();
}

}  // namespace envelopefs::cli
