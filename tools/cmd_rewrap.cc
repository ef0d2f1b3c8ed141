// envelopectl rewrap — moves every file's DEK to the active KEK version (after keys rotate),
// rewriting only the two key slots of each header: the data is never read or rewritten, so the
// cost does not depend on file sizes. Crash-safe and safe while mounted (see rewrap.h); running
// it again after an interruption finishes the job. --shard K/N splits the work across machines.
// Streams the walk (ParallelWalk): each thread holds one slice of paths at a time.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/encoding.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/parallel_walk.h"
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

struct Failure {
  uint64_t index;  // in the walk: failures are reported in walk order
  std::string file;
  std::string why;
};

// One worker's share of the walk: the files it took and has not rewrapped yet (at most one
// slice: RewrapFiles holds them all open until its batch's sync), and what it found so far.
struct RewrapWorker {
  std::vector<std::string> files;  // cipher paths relative to the cipher dir
  std::vector<uint64_t> indices;   // their walk indices
  std::vector<uint8_t> half_done;  // a file got its first slot (for the progress bar)
  RewrapStats stats;
  std::vector<Failure> failures;
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
  const Volume::KekCopy target = volume->ActiveKek();
  const unsigned jobs = std::max(1u, JobCount(args));
  const size_t slice = SliceForFdLimit(jobs);
  const NameTransform names = MakeNameTransform(*volume);  // exact internal-file rules

  // Streamed: each worker takes the files of this shard from the walk, a slice at a time, and
  // rewraps each slice (crash-safe batches, see rewrap.h) before taking the next.
  std::vector<RewrapWorker> workers(jobs);
  // Two steps per file: a file that gets a new record is reported when its first slot is
  // written and again after its batch's sync, so the count moves file by file, not by batches.
  auto in_shard = [&](const CipherEntry& e) {
    return e.type == DT_REG &&
           (shard.count <= 1 || ShardOf(e.relative, shard.count) == shard.index);
  };
  // On a terminal, a first walk counts the files for the bar (it keeps nothing).
  const bool bar = Progress::WantedFor(args);
  Progress progress(bar, "files", bar ? CountEntries(dir, names, in_shard) : 0, 2);
  FailuresPrintedFromOutcomes printed;
  auto rewrap_slice = [&](RewrapWorker& w) {
    if (w.files.empty()) return;
    w.half_done.assign(w.files.size(), 0);
    auto on_file = [&](const std::string& file, RewrapOutcome outcome, const std::string& why) {
      const size_t at = static_cast<size_t>(&file - w.files.data());
      const bool half = at < w.files.size() && w.half_done[at] != 0;
      if (outcome == RewrapOutcome::kFirstSlotWritten) {
        if (at < w.files.size()) w.half_done[at] = 1;
        progress.Add(1);
        return;
      }
      progress.Add(half ? 1 : 2);
      if (outcome != RewrapOutcome::kFailed) return;
      w.failures.push_back({at < w.files.size() ? w.indices[at] : UINT64_MAX, file, why});
    };
    w.stats += RewrapFiles(*volume, target, w.files, on_file, printed);
    w.files.clear();
    w.indices.clear();
  };
  ParallelWalk(
      dir, names, {jobs, kWalkQueueCapacity}, in_shard,
      [&](unsigned t, const CipherEntry& e, uint64_t index) {
        RewrapWorker& w = workers[t];
        w.files.push_back(e.relative);
        w.indices.push_back(index);
        if (w.files.size() >= slice) rewrap_slice(w);
      },
      [&](unsigned t) { rewrap_slice(workers[t]); });
  progress.Finish();

  std::vector<Failure> failures;
  for (RewrapWorker& w : workers) {
    for (Failure& f : w.failures) failures.push_back(std::move(f));
  }
  std::sort(failures.begin(), failures.end(),
            [](const Failure& a, const Failure& b) { return a.index < b.index; });
  RewrapStats total;
  for (const RewrapWorker& w : workers) total += w.stats;
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
