// Helpers shared by the envelopectl subcommands: finding and walking a volume, header-only reads
// of cipher files, checking a header with the keys, reading a file's plaintext, running work on
// several threads, the shared key-policy report and writing output. Functions are thread-safe
// unless noted.
//
// Error convention of envelopectl (tools/): a command returns its exit code (exit_codes.h) for
// what it finds (e.g. kExitDamaged after reporting damage in its own format), and throws Error
// for what stops it; envelopectl_main.cc prints that one line and exits with
// ExitCodeFor(ErrorKindOf(e)) (error_mapping.h: the only kind-to-code mapping). Damage found in
// files a command reads reaches it through the DamageReporter it opened them with
// (DamageCollector), never by parsing messages.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "envelopefs/cipher_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/cipher_header.h"
#include "envelopefs/damage_reporter.h"
#include "envelopefs/file_header.h"
#include "envelopefs/key_policy.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"

namespace envelopefs::cli {

inline constexpr char kCipherName[] = "AES-256-GCM";
inline constexpr size_t kReadStep = 1 << 20;  // plaintext read in 1 MiB steps

// --- volumes and options -------------------------------------------------------------------

bool IsVolumeRoot(const std::filesystem::path& dir);
// The directory holding envelopefs.toml at or above `start` (a file or a directory).
// Throws Error(kConfig) if there is none.
std::filesystem::path FindVolumeRoot(const std::filesystem::path& start);
// Throws Error(kConfig) unless `dir` is a volume root (names the missing config).
void RequireVolumeRoot(const std::filesystem::path& dir);
NameTransform MakeNameTransform(const Volume& volume);
// The cipher dir opened O_PATH (for commands that run without a key, hence without a Volume).
UniqueFd OpenRoot(const std::filesystem::path& dir);
// --jobs, or one per core.
unsigned JobCount(const Args& args);
// The current time (Unix seconds).
int64_t NowUnix();

// --- walking ---------------------------------------------------------------------------------

// Every entry below the volume root (WalkCipherDir order: a directory before its entries), kept
// in memory: for ls (which sorts them) and decrypt. The other tools stream (ParallelWalk).
std::vector<CipherEntry> CollectEntries(const std::filesystem::path& cipher_dir,
                                        const NameTransform& names);
// How many entries `wanted` accepts (every entry if null), by a walk that keeps nothing: the
// total of the progress bar of a streamed walk (ParallelWalk), which learns it only at the end.
uint64_t CountEntries(const std::filesystem::path& cipher_dir, const NameTransform& names,
                      const std::function<bool(const CipherEntry&)>& wanted);
// The plaintext path if known, else the cipher path (for messages).
std::string DisplayName(const CipherEntry& entry);
// "file", "dir", "symlink", ... for a d_type.
const char* TypeName(unsigned char d_type);

// --- threads ---------------------------------------------------------------------------------

// Runs body(i) for i in [0, jobs) on `jobs` threads (inline if 1); joins them all, then rethrows
// the first exception any of them threw.
void RunOnThreads(unsigned jobs, const std::function<void(unsigned)>& body);
// Slice i of `parts` near-equal contiguous slices of [0, n): {begin, end}.
std::pair<size_t, size_t> SliceBounds(size_t n, unsigned parts, unsigned i);
// Calls fn(i) for every i in [0, n) on `jobs` threads, each taking the next index as it goes.
void ParallelFor(size_t n, unsigned jobs, const std::function<void(size_t)>& fn);

// --- headers ---------------------------------------------------------------------------------

// The header of a cipher file found by a walk: opened below the volume's root without following
// symlinks. Reading needs no key.
HeaderRead ReadEntryHeader(int root_fd, const CipherEntry& entry);
// The header of a file the user named on the command line (the last component is not followed).
HeaderRead ReadHeaderAt(const std::filesystem::path& path);

// The volume's unwrapped KEKs, copied once; read-only afterwards, so shareable across threads.
class KekTable : public KekSource {
 public:
  explicit KekTable(const Volume& volume);
  bool FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const override;

 private:
  std::map<std::pair<uint32_t, uint32_t>, SecureBytes> keks_;
};

struct HeaderCheck {
  bool ok = false;
  std::string reason;  // why not ok
  int slot = -1;       // the key slot that opened (-1: none)
  Sha256Digest dek_fingerprint{};
  FileState state;  // the newest authentic state record
};

// OpenHeader (everything but the chunks) plus the DEK's fingerprint.
HeaderCheck CheckHeader(const HeaderRead& header, const KekSource& keks);
std::string KekLabel(uint32_t id, uint32_t version);  // "version 2 (id 0x1a2b3c4d)"

// --- reading plaintext -----------------------------------------------------------------------

// A DamageReporter for the files a command reads and reports on itself, once, in its own
// format: keeps the detail of the last damage reported (e.g. "chunk 3: ... (EIO)"); unsealed
// files are not reported (the command asks CipherFile::sealed()). Use one per file, declared
// before the file so that it outlives it. Thread-safe.
class DamageCollector : public DamageReporter {
 public:
  void Damaged(const Damage& damage) override;
  void Unsealed(const std::string&) override {}
  void CopyDamaged(const Damage& damage) override;
  // The last detail reported (and clears it); empty if none.
  std::string Take();
  // The last damaged copy of a header record reported (and clears it); empty if none.
  std::string TakeCopyDamage();

 private:
  std::mutex mu_;
  std::string last_;
  std::string copy_;
};

// Opens a cipher file found by a walk read-only, below the volume's root without following
// symlinks, through CipherFile::Open (the daemon's data path), reporting damage to `damage`.
// Throws Error with a message that names no file (the caller names it in its own format),
// except for a failed open, which names the cipher path.
std::shared_ptr<CipherFile> OpenEntry(const Volume& volume, const CipherEntry& entry,
                                      DamageReporter& damage);
// Reads the whole plaintext in kReadStep pieces into `sink`. Returns 0 or -errno (-EIO when a
// chunk does not authenticate: nothing after the last good chunk reaches the sink).
int StreamPlaintext(CipherFile& file, const std::function<void(std::span<const uint8_t>)>& sink);

// Library log lines go to stderr as "envelopectl: [warning: ]MESSAGE". Call once, before
// starting threads. (Damage is not logged: it goes to the reporter a file was opened with.)
void UseToolLogSink();

// --- key policy report (keys list, audit) ----------------------------------------------------

// The KEK versions against the rotation policy, evaluated once at `now`.
struct KeyPolicyReport {
  std::vector<KekPolicyStatus> statuses;
  uint32_t rotate_after_days = 0;
  // True only when the keyring was opened with the master key. Without it, the versions, dates
  // and policy are what the stored keyring claims: anyone who can write the cipher dir can
  // change them (a report must never call them authenticated).
  bool authenticated = false;
  int64_t now = 0;  // Unix seconds
};
// From an unlocked volume (authenticated).
KeyPolicyReport KeyPolicyOf(const Volume& volume);
// Without a key, from the keyring as stored below `root_fd` (checked for shape and volume id
// only). Throws Error(kConfig) if it cannot be read.
KeyPolicyReport ClaimedKeyPolicy(int root_fd, const std::filesystem::path& cipher_dir,
                                 const VolumeConfig& config);
nlohmann::json KeysJson(const std::vector<KekPolicyStatus>& statuses);
// The table, the policy line and, when not authenticated, a note saying so.
void PrintKeysTable(const KeyPolicyReport& report);
// One stderr line per overdue version (for --check).
void WarnOverdue(const KeyPolicyReport& report, const std::string& rotate_command);

// --- output --------------------------------------------------------------------------------

// Pretty-printed, on stdout; bytes of names that are not UTF-8 are replaced by U+FFFD.
void PrintJson(const nlohmann::json& value);
// Writes all of `data` to `fd` (retrying short writes and EINTR). Throws Error "write WHAT: ..."
// on failure.
void WriteAll(int fd, std::span<const uint8_t> data, const std::string& what);

}  // namespace envelopefs::cli
