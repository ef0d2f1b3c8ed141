// Rewrap — see rewrap.h.
#include "envelopefs/rewrap.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "envelopefs/beneath.h"
#include "envelopefs/cipher_header.h"
#include "envelopefs/error.h"
#include "envelopefs/file_header.h"
#include "envelopefs/shown_ctime.h"
#include "envelopefs/unique_fd.h"
#include "header_lock.h"
#include "kept_times.h"

namespace envelopefs {
namespace {

using namespace format;

struct Pending {
  const std::string* path;
  UniqueFd fd;
  dev_t dev;
  std::array<uint8_t, kFixedSize> fixed;  // the fixed part the record is bound to
  KeySlotBytes record;
  int first_slot;    // written before the first sync; the other one after it
  KeptTimes mtime;   // a rewrap changes no contents: the times the mount shows are kept
  Sha256Digest dek;  // the DEK's fingerprint: the second slot is written only for the same DEK
  // The state counter seen under the header lock in phase 1, if the times may be put back
  // (SealedCounter).
  std::optional<uint64_t> sealed_counter;
};

// How long rewrap waits for a header lock held by someone else (the daemon holds it for at most
// one file's fdatasync) before it leaves the file as failed.
constexpr std::chrono::milliseconds kLockPatience{10000};
// How long after taking a lock rewrap may still put a file's times back: well within the 5 s
// after which the daemon's first write to a sealed file stops waiting for the lock.
constexpr std::chrono::milliseconds kRestoreWithin{2000};
constexpr char kBusyReason[] = "another process holds the file's header lock";

// The state counter of a file whose times a rewrap may put back: sealed, in a format whose
// writers unseal (under the header lock, cipher_file_state.cc) before any data write. A file
// that is unsealed may be being written through a mount: a write landing between KeptTimes'
// check and its futimens would get its modification time set back, and backup tools going by
// it would miss the change. Such files, and format 1 files (an overwrite in place does not
// unseal them, so nothing proves that no write happened), keep the rewrap's own time instead:
// a backup copies them once more, and misses nothing.
std::optional<uint64_t> SealedCounter(const HeaderRead& header, const OpenedHeader& opened) {
  if (header.fixed.version < kFormatVersion2 || !opened.state.sealed()) return std::nullopt;
  return opened.state.counter;
}

// 0 or an errno.
int WriteSlot(int fd, const KeySlotBytes& record, int slot) {
  ssize_t n = pwrite(fd, record.data(), record.size(), static_cast<off_t>(kKeySlotOffset[slot]));
  if (n == static_cast<ssize_t>(record.size())) return 0;
  return n < 0 ? errno : EIO;  // a short write of 128 bytes: the disk is full
}

// A file of the next batch, opened before the batch's first sync.
struct Candidate {
  const std::string* path;
  UniqueFd fd;
  dev_t dev;
  struct timespec ctime;  // before the sync: a file changed since is synced on its own
};

// syncfs(2) of every file system the batch touched (a cipher dir may span mounts).
template <typename Items>
void SyncFileSystems(const Items& batch) {
  std::set<dev_t> done;
  for (const auto& p : batch) {
    if (!done.insert(p.dev).second) continue;
    if (syncfs(p.fd.get()) != 0) ThrowSystemError("syncfs");
  }
}

}  // namespace

RewrapStats& RewrapStats::operator+=(const RewrapStats& o) {
  examined += o.examined;
  rewrapped += o.rewrapped;
  already_current += o.already_current;
  skipped += o.skipped;
  failed += o.failed;
  return *this;
}

uint32_t ShardOf(const std::string& relative_cipher_path, uint32_t count) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : relative_cipher_path) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<uint32_t>(h % count);
}

RewrapStats RewrapFiles(
    const Volume& volume, const Volume::KekCopy& target, std::span<const std::string> files,
    const std::function<void(const std::string&, RewrapOutcome, const std::string&)>& on_file,
    DamageReporter& reporter) {
  RewrapStats stats;
  auto report = [&](const std::string& p, RewrapOutcome o, const std::string& why) {
    if (on_file) on_file(p, o, why);
  };
  std::vector<Pending> batch;
  batch.reserve(kRewrapBatch);

  auto finish_batch = [&] {
    if (batch.empty()) return;
    // Phase 1 is written; make it durable, then overwrite the other slot and sync again.
    SyncFileSystems(batch);
    for (Pending& p : batch) {
      HeaderLock lock(p.fd.get(), kLockPatience);
      if (lock.busy()) {
        ++stats.failed;  // the first slot already holds the new record: the file is fine
        report(*p.path, RewrapOutcome::kFailed, "second slot: " + std::string(kBusyReason));
        continue;
      }
      HeaderRead now = ReadHeader(p.fd.get());
      OpenedHeader again = OpenHeader(now, volume, /*check_length=*/false);
      if (now.status != HeaderStatus::kOk ||
          std::memcmp(now.bytes.data(), p.fixed.data(), kFixedSize) != 0 ||
          std::memcmp(now.SlotBytes(p.first_slot).data(), p.record.data(), kKeySlotSize) != 0 ||
          !again.ok || again.slots_disagree || DekFingerprint(again.dek) != p.dek) {
        // The daemon gave the file a new header meanwhile (truncated to zero): that header is
        // already wrapped under the active KEK.
        ++stats.already_current;
        report(*p.path, RewrapOutcome::kCurrent, "");
        continue;
      }
      const int written =
          p.mtime.Write([&] { return WriteSlot(p.fd.get(), p.record, 1 - p.first_slot); });
      // Still under the lock: sealed since phase 1 with the same record, so no data write
      // happened since, and none can start before the lock is released (or before the daemon
      // stops waiting for it: hence the deadline, should this process have been stopped).
      if (p.sealed_counter && again.state.sealed() && again.state.counter == *p.sealed_counter) {
        p.mtime.Restore(lock.acquired_at() + kRestoreWithin);
      }
      if (written != 0) {
        ++stats.failed;  // the first slot already holds the new record: the file is fine
        report(*p.path, RewrapOutcome::kFailed, std::string("second slot: ") + strerror(written));
        continue;
      }
      ++stats.rewrapped;
      report(*p.path, RewrapOutcome::kRewrapped, "");
    }
    SyncFileSystems(batch);
    batch.clear();
  };

  // Phase 1 of one file: its first slot, under the lock, released before finish_batch takes the
  // locks of the batch (the same inode may be in it under another name: a hard link).
  auto first_phase = [&](Candidate& c) {
    const std::string& path = *c.path;
    const int fd = c.fd.get();
    HeaderLock lock(fd, kLockPatience);
    if (lock.busy()) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, kBusyReason);
      return;
    }
    HeaderRead header = ReadHeader(fd);
    if (header.status == HeaderStatus::kNotEnvelope ||
        (header.status == HeaderStatus::kDamaged && header.cipher_size == 0)) {
      ++stats.skipped;  // stored unencrypted, or still being created
      report(path, RewrapOutcome::kSkipped, header.reason);
      return;
    }
    OpenedHeader opened = OpenHeader(header, volume, /*check_length=*/false);
    if (opened.slot < 0) {
      ++stats.failed;
      const std::string why = header.status != HeaderStatus::kOk
                                  ? header.reason
                                  : opened.problem + " (or the header is damaged)";
      // A KEK version this volume does not have may be a retired one: not proof of damage.
      if (header.status == HeaderStatus::kDamaged ||
          (header.status == HeaderStatus::kOk && opened.kind == ErrorKind::kAuthentication)) {
        ReportDamage(reporter, {(volume.cipher_dir() / path).string(), std::nullopt, why});
      }
      report(path, RewrapOutcome::kFailed, why);
      return;
    }
    if (opened.slots_disagree) {
      // One slot holds a DEK the state records are not under: a truncation to zero torn
      // between its writes, or tampering. Overwriting either slot could destroy the only copy
      // of a DEK in use; the file is left for a write through the mount to repair.
      ++stats.failed;
      const std::string why =
          "the key slots hold different data keys (" + opened.note +
          "); not rewrapped: write the file again through the mount, or restore it";
      ReportDamage(reporter, {(volume.cipher_dir() / path).string(), std::nullopt, why});
      report(path, RewrapOutcome::kFailed, why);
      return;
    }
    bool current = true;
    for (int i = 0; i < 2; ++i) {
      current = current && opened.slot_opens[i] && header.slots[i].kek_id == target.info.id &&
                header.slots[i].kek_version == target.info.version;
    }
    if (current) {
      ++stats.already_current;
      report(path, RewrapOutcome::kCurrent, "");
      return;
    }
    // Overwrite first a slot that is not the only valid one: an invalid slot, else the one with
    // the lower generation (slot 1 on a tie).
    const int first = !opened.slot_opens[0]                                     ? 0
                      : !opened.slot_opens[1]                                   ? 1
                      : header.slots[0].generation < header.slots[1].generation ? 0
                                                                                : 1;
    // Only the generations of slots that open are authenticated.
    uint64_t generation = 0;
    for (int i = 0; i < 2; ++i) {
      if (opened.slot_opens[i]) generation = std::max(generation, header.slots[i].generation);
    }
    if (generation < UINT64_MAX) ++generation;
    // The slot that stays must be durable before the other is overwritten, so that no crash
    // can tear both. The batch's first sync made every earlier write durable; a file changed
    // since (the daemon's new header after a truncation to zero, whose last slot it does not
    // sync; a concurrent rewrap; this batch under another name) is synced on its own.
    struct stat st;
    if (::fstat(fd, &st) != 0 || !SameTime(st.st_ctim, c.ctime)) {
      if (::fdatasync(fd) != 0) {
        ++stats.failed;
        report(path, RewrapOutcome::kFailed, std::string("fdatasync: ") + strerror(errno));
        return;
      }
    }
    Pending p{&path,
              std::move(c.fd),
              header.dev,
              {},
              {},
              first,
              KeptTimes(fd),
              DekFingerprint(opened.dek),
              SealedCounter(header, opened)};
    std::memcpy(p.fixed.data(), header.bytes.data(), kFixedSize);
    p.record =
        WrapDek(header.FixedBytes(), KeySlotInfo{generation, target.info.id, target.info.version},
                opened.dek, target.key);
    if (int rc = p.mtime.Write([&] { return WriteSlot(p.fd.get(), p.record, first); }); rc != 0) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, strerror(rc));
      return;
    }
    batch.push_back(std::move(p));
    report(path, RewrapOutcome::kFirstSlotWritten, "");
  };

  std::vector<Candidate> candidates;
  candidates.reserve(kRewrapBatch);
  auto run_batch = [&] {
    if (candidates.empty()) return;
    SyncFileSystems(candidates);
    for (Candidate& c : candidates) first_phase(c);
    candidates.clear();
    finish_batch();
  };
  for (const std::string& path : files) {
    ++stats.examined;
    int fd = OpenRegularBeneath(volume.root_fd(), path, O_RDWR);
    if (fd < 0) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, strerror(-fd));
      continue;
    }
    Candidate c{&path, UniqueFd(fd), 0, {}};
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, std::string("fstat: ") + strerror(errno));
      continue;
    }
    c.dev = st.st_dev;
    c.ctime = st.st_ctim;
    candidates.push_back(std::move(c));
    if (candidates.size() == kRewrapBatch) run_batch();
  }
  run_batch();
  return stats;
}

}  // namespace envelopefs
