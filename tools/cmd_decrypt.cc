// envelopectl decrypt — restores plaintext without FUSE: one cipher file to a file or stdout, or
// a whole volume (directories, files, symlinks with decrypted targets, FIFOs and devices, with
// modes, times and, as root, owners) to a directory. Only authenticated plaintext is ever left
// behind: each file is written to a temp file and renamed into place once every chunk of it
// authenticated; on any failure the partial output is removed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "cli.h"
#include "common.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

struct Failure {
  ErrorKind kind;
  std::string reason;
};

void WriteAll(int fd, std::span<const uint8_t> data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSystemError("write " + what);
    data = data.subspan(static_cast<size_t>(n));
  }
}

// A temp file next to `target`, created 0600, unlinked unless Commit() renames it into place.
class TempOutput {
 public:
  explicit TempOutput(const fs::path& target) : target_(target) {
    std::string tmpl =
        (target.parent_path() / ("." + target.filename().string() + ".envelopectl-XXXXXX"))
            .string();
    fd_.reset(mkstemp(tmpl.data()));
    if (!fd_.valid()) ThrowSystemError("create a temp file for " + target.string());
    path_ = tmpl;
  }
  ~TempOutput() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  int fd() const { return fd_.get(); }
  void Commit() {
    if (::rename(path_.c_str(), target_.c_str()) != 0)
      ThrowSystemError("rename to " + target_.string());
    path_.clear();
  }

 private:
  fs::path target_, path_;
  UniqueFd fd_;
};

struct timespec TimesOf(const struct stat& st, int which) {
  return which == 0 ? st.st_atim : st.st_mtim;
}

// Mode, owner (as root) and times of `st` onto the open file `fd`.
void ApplyMetadata(int fd, const struct stat& st) {
  if (geteuid() == 0) (void)::fchown(fd, st.st_uid, st.st_gid);
  ::fchmod(fd, st.st_mode & 07777);
  const struct timespec times[2] = {TimesOf(st, 0), TimesOf(st, 1)};
  ::futimens(fd, times);
}

// The same by path, not following symlinks (no mode for symlinks).
void ApplyMetadata(const fs::path& path, const struct stat& st) {
  if (geteuid() == 0) (void)::lchown(path.c_str(), st.st_uid, st.st_gid);
  if (!S_ISLNK(st.st_mode)) ::chmod(path.c_str(), st.st_mode & 07777);
  const struct timespec times[2] = {TimesOf(st, 0), TimesOf(st, 1)};
  ::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

// Streams the authenticated plaintext of `file` into `fd`; a Failure if a chunk fails.
std::optional<Failure> CopyPlaintext(CipherFile& file, int fd, const std::string& what) {
  TakeDamageReport();
  int rc =
      StreamPlaintext(file, [&](std::span<const uint8_t> piece) { WriteAll(fd, piece, what); });
  if (rc == 0) return std::nullopt;
  std::string detail = TakeDamageReport();
  if (detail.empty()) detail = std::strerror(-rc);
  return Failure{rc == -EIO ? ErrorKind::kAuthentication : ErrorKind::kIo, detail};
}

std::optional<Failure> RestoreFile(const Volume& volume, const fs::path& cipher,
                                   const std::string& display, const fs::path& target) {
  try {
    auto file = OpenCipherFile(cipher, volume, display);
    struct stat st;
    if (::fstat(file->fd(), &st) != 0) ThrowSystemError("fstat " + cipher.string());
    TempOutput out(target);
    if (auto failure = CopyPlaintext(*file, out.fd(), target.string())) return failure;
    ApplyMetadata(out.fd(), st);
    out.Commit();
    return std::nullopt;
  } catch (const Error& e) {
    return Failure{e.kind(), WithoutName(e.what(), display)};
  }
}

int DecryptOneFile(const Args& args, const fs::path& cipher) {
  auto volume = OpenVolume(args, FindVolumeRoot(cipher));
  CaptureDamageReports();
  const std::string display = cipher.string();
  std::optional<Failure> failure;
  if (args.output && *args.output != "-") {
    failure = RestoreFile(*volume, cipher, display, *args.output);
  } else {
    auto file = OpenCipherFile(cipher, *volume, display);
    failure = CopyPlaintext(*file, STDOUT_FILENO, "standard output");
  }
  if (failure) throw Error(failure->kind, display + ": " + failure->reason);
  return kExitOk;
}

// --- a whole volume --------------------------------------------------------------------------

class TreeRestore {
 public:
  TreeRestore(const Args& args, const Volume& volume, fs::path out)
      : args_(args), volume_(volume), names_(MakeNameTransform(volume)), out_(std::move(out)) {}

  int Run() {
    PrepareOutputDir();
    entries_ = CollectEntries(volume_.cipher_dir(), names_);
    for (const CipherEntry& e : entries_) CreateNonFile(e);
    ParallelFor(files_.size(), JobCount(args_), [&](size_t i) {
      const CipherEntry& e = *files_[i];
      if (auto f = RestoreFile(volume_, e.cipher_path, e.plain_path, out_ / e.plain_path)) {
        Fail(e, *f);
      } else {
        ++restored_files_;
      }
    });
    // Directory modes and times last (children change a directory's mtime), deepest first.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) ApplyMetadata(it->first, it->second);
    return Summarize();
  }

 private:
  void PrepareOutputDir() {
    std::error_code ec;
    if (!fs::exists(out_, ec)) {
      if (::mkdir(out_.c_str(), 0700) != 0) ThrowSystemError("mkdir " + out_.string());
    } else if (!fs::is_directory(out_, ec) || !fs::is_empty(out_, ec)) {
      throw Error(ErrorKind::kState, out_.string() + " exists and is not an empty directory");
    }
  }

  void Fail(const CipherEntry& e, const Failure& f) {
    std::lock_guard<std::mutex> lock(mu_);
    damaged_ = damaged_ || ExitCodeFor(f.kind) == kExitDamaged;
    if (!first_kind_) first_kind_ = f.kind;
    std::fprintf(stderr, "envelopectl: not restored: %s (%s): %s\n",
                 e.plain_path.empty() ? "?" : e.plain_path.c_str(), e.cipher_path.c_str(),
                 f.reason.c_str());
    ++failed_;
  }

  void CreateNonFile(const CipherEntry& e) {
    if (!e.name_ok) return Fail(e, {ErrorKind::kAuthentication, "name does not authenticate"});
    if (e.type == DT_REG) return files_.push_back(&e);
    const fs::path target = out_ / e.plain_path;
    struct stat st;
    if (::lstat(e.cipher_path.c_str(), &st) != 0) {
      return Fail(e, {ErrorKind::kIo, std::string("lstat: ") + std::strerror(errno)});
    }
    if (std::optional<Failure> f = CreateNode(e, st, target)) return Fail(e, *f);
    if (e.type == DT_DIR) {
      dirs_.emplace_back(target, st);
    } else {
      ApplyMetadata(target, st);
      ++restored_other_;
    }
  }

  std::optional<Failure> CreateNode(const CipherEntry& e, const struct stat& st,
                                    const fs::path& target) {
    int rc;
    if (e.type == DT_DIR) {
      rc = ::mkdir(target.c_str(), 0700);
    } else if (e.type == DT_LNK) {
      std::string stored(PATH_MAX, '\0');
      ssize_t n = ::readlink(e.cipher_path.c_str(), stored.data(), stored.size());
      if (n < 0) return Failure{ErrorKind::kIo, std::string("readlink: ") + std::strerror(errno)};
      stored.resize(static_cast<size_t>(n));
      std::optional<std::string> link = names_.DecryptSymlink(stored);
      if (!link) return Failure{ErrorKind::kAuthentication, "symlink target does not authenticate"};
      rc = ::symlink(link->c_str(), target.c_str());
    } else {
      rc = ::mknod(target.c_str(), st.st_mode & (S_IFMT | 0600), st.st_rdev);
    }
    if (rc != 0) return Failure{ErrorKind::kIo, std::string("create: ") + std::strerror(errno)};
    return std::nullopt;
  }

  int Summarize() {
    if (!args_.quiet) {
      std::printf("restored %llu files, %zu directories, %llu other entries to %s; %llu failed\n",
                  static_cast<unsigned long long>(restored_files_.load()), dirs_.size(),
                  static_cast<unsigned long long>(restored_other_), out_.c_str(),
                  static_cast<unsigned long long>(failed_));
    }
    if (damaged_) return kExitDamaged;
    return first_kind_ ? ExitCodeFor(*first_kind_) : kExitOk;
  }

  const Args& args_;
  const Volume& volume_;
  const NameTransform names_;
  const fs::path out_;
  std::vector<CipherEntry> entries_;
  std::vector<const CipherEntry*> files_;
  std::vector<std::pair<fs::path, struct stat>> dirs_;
  std::atomic<uint64_t> restored_files_{0};
  uint64_t restored_other_ = 0;
  std::mutex mu_;
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
  CaptureDamageReports();
  return TreeRestore(args, *volume, *args.output).Run();
}

}  // namespace envelopefs::cli
