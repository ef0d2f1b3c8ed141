// envelopectl rewrap — moves every file's DEK to the active KEK version (after keys rotate),
// rewriting only the two key slots of each header: the data is never read or rewritten, so the
// cost does not depend on file sizes. Crash-safe and safe while mounted (see rewrap.h); running
// it again after an interruption finishes the job. --shard K/N splits the work across machines.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/encoding.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/rewrap.h"
#include "progress.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

// RewrapFiles keeps one fd open per file of its current batch (kRewrapBatch) until the batch's
// syncfs; sub-slices keep jobs x slice within the fd limit.
constexpr rlim_t kReservedFds = 64;

// Raises the soft fd limit to the hard one; returns the files each of `jobs` threads may hold.
size_t SliceForFdLimit(unsigned jobs) {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 256;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  rlim_t usable = lim.rlim_cur > 2 * kReservedFds ? lim.rlim_cur - kReservedFds : kReservedFds;
  return std::clamp<size_t>(static_cast<size_t>(usable / jobs), 1, kRewrapBatch);
}

// The cipher paths (relative to the cipher dir) of the regular files in this shard.
std::vector<std::string> FilesOfShard(const Volume& volume, const Shard& shard) {
  NameTransform names = MakeNameTransform(volume);  // exact internal-file rules, any names mode
  std::vector<std::string> files;
  WalkCipherDir(volume.cipher_dir(), names, [&](const CipherEntry& e) {
    if (e.type != DT_REG) return;
    if (shard.count > 1 && ShardOf(e.relative, shard.count) != shard.index) return;
    files.push_back(e.relative);
  });
  return files;
}

struct Failure {
  std::string file;
  std::string why;
};

// Every failed file is printed once, from its outcome (kFailed with the reason): a damaged
// header adds nothing to that, and is not recorded in the audit log by rewrap.
class FailuresPrintedFromOutcomes : public DamageReporter {
 public:
  void Damaged(const Damage&) override {}
};

}  // namespace

int RunRewrap(const Args& args) {
  ExpectArgs(args, 1, 1, "rewrap CIPHERDIR [--jobs N] [--shard K/N]");
  const fs::path dir = args.words[1];
  RequireVolumeRoot(dir);
  const auto start = std::chrono::steady_clock::now();
  auto volume = OpenVolume(args, dir);
  const Shard shard = args.shard.value_or(Shard{});
  const std::vector<std::string> files = FilesOfShard(*volume, shard);
  const Volume::KekCopy target = volume->ActiveKek();
  const unsigned jobs = static_cast<unsigned>(std::clamp<size_t>(files.size(), 1, JobCount(args)));
  const size_t slice = SliceForFdLimit(jobs);

  std::vector<RewrapStats> stats(jobs);
  std::vector<Failure> failures;
  std::mutex mu;
  // Two steps per file: a file that gets a new record is reported when its first slot is
  // written and again after its batch's sync, so the bar moves file by file, not by batches.
  Progress progress(Progress::WantedFor(args), "files", files.size(), 2);
  std::vector<uint8_t> half_done(files.size());  // each element touched by one thread only
  auto on_file = [&](const std::string& file, RewrapOutcome outcome, const std::string& why) {
    const size_t index = static_cast<size_t>(&file - files.data());
    const bool half = index < files.size() && half_done[index] != 0;
    if (outcome == RewrapOutcome::kFirstSlotWritten) {
      if (index < files.size()) half_done[index] = 1;
      progress.Add(1);
      return;
    }
    progress.Add(half ? 1 : 2);
    if (outcome != RewrapOutcome::kFailed) return;
    std::lock_guard<std::mutex> lock(mu);
    failures.push_back({file, why});
  };
  FailuresPrintedFromOutcomes printed;
  RunOnThreads(jobs, [&](unsigned t) {
    auto [begin, end] = SliceBounds(files.size(), jobs, t);
    for (size_t i = begin; i < end; i += slice) {
      std::span<const std::string> part(files.data() + i, std::min(slice, end - i));
      stats[t] += RewrapFiles(*volume, target, part, on_file, printed);
    }
  });
  progress.Finish();

  RewrapStats total;
  for (const RewrapStats& s : stats) total += s;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string shard_text =
      std::to_string(shard.index + 1) + "/" + std::to_string(shard.count);
  nlohmann::json summary = {{"version", target.info.version},
                            {"rewrapped", total.rewrapped},
                            {"already_current", total.already_current},
                            {"skipped", total.skipped},
                            {"failed", total.failed},
                            {"files", total.examined},
                            {"shard", shard_text},
                            {"seconds", seconds}};
  // In the audit log a KEK version is always "kek_version" (one field name per concept).
  nlohmann::json event = summary;
  event.erase("version");
  event["kek_version"] = target.info.version;
  AppendAuditEvent(*volume, "rewrap_finished", event);
  for (const Failure& f : failures) {
    std::fprintf(stderr, "envelopectl: rewrap failed: %s: %s\n",
                 EscapeName((dir / f.file).string()).c_str(), EscapeName(f.why).c_str());
  }
  if (args.json) {
    nlohmann::json failed = nlohmann::json::array();
    for (const Failure& f : failures)
      failed.push_back({{"cipher_path", (dir / f.file).string()}, {"reason", f.why}});
    summary["failures"] = failed;
    PrintJson(summary);
  } else if (!args.quiet) {
    std::printf(
        "rewrapped %llu, already current %llu, skipped %llu, failed %llu (%llu files in %.1f s)\n",
        static_cast<unsigned long long>(total.rewrapped),
        static_cast<unsigned long long>(total.already_current),
        static_cast<unsigned long long>(total.skipped),
        static_cast<unsigned long long>(total.failed),
        static_cast<unsigned long long>(total.examined), seconds);
  }
  return total.failed > 0 ? kExitDamaged : kExitOk;
}

}  // namespace envelopefs::cli
