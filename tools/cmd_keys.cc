// envelopectl keys — lists KEK versions against the rotation policy, rotates to a new version,
// retires a version no file uses any more (destroying its key), and changes the master key.
// Every change is recorded in the audit log.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/cert_expiry.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/parallel_walk.h"
#include "envelopefs/unique_fd.h"
#include "keys_master.h"
#include "progress.h"
#include "prometheus.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

constexpr size_t kFilesNamed = 5;  // files named in a refusal

constexpr char kKeysUsage[] =
    "keys list CIPHERDIR [--json] [--check] [--prometheus FILE] | keys rotate CIPHERDIR | "
    "keys retire CIPHERDIR --kek-version N [--destroy-old-master] | "
    "keys change-master CIPHERDIR NEW | keys add-master CIPHERDIR (NEW | --new-recovery-key) | "
    "keys remove-master CIPHERDIR --slot N | keys destroy-old-master CIPHERDIR | "
    "keys policy CIPHERDIR [--rotate-after-days N] [--audit-log on|off]";

// With --keyfile/--passfile: the authenticated keyring. Without: the keyring as stored, for
// monitoring that holds no key (a cron job); the output then says it is not authenticated.
int KeysList(const Args& args, const fs::path& dir) {
  const std::optional<PrometheusFile> prometheus = PrometheusFileFor(args);
  // The client certificate of a key server (--tls-cert): its expiry, alerted 30, 14 and 7 days
  // ahead.
  std::optional<CertExpiry> cert;
  if (args.current.tls_cert) cert = CheckCertExpiry(*args.current.tls_cert, NowUnix());
  KeyPolicyReport report;
  std::string volume_id;
  std::vector<MasterSlot> slots;
  std::vector<MasterKeyParams> pending;
  bool slots_authenticated = false;  // without a key, the slots are the keyring's claims
  if (args.HasKey()) {
    auto volume = OpenVolume(args, dir, /*log_unlock=*/false);
    report = KeyPolicyOf(*volume);
    volume_id = ToHex(volume->config().volume_id);
    slots = volume->master_slots();
    pending = volume->pending_destroy();
    slots_authenticated = true;
  } else {
    UniqueFd root = OpenRoot(dir);
    const VolumeConfig config = VolumeConfig::LoadAt(root.get(), dir);
    report = ClaimedKeyPolicy(root.get(), dir, config);
    volume_id = ToHex(config.volume_id);
    const KeyringFile file = KeyringFile::Read(root.get(), dir);
    slots = file.slots(config);
    pending = file.pending_destroy();
  }
  if (args.json) {
    nlohmann::json out = {{"volume_id", volume_id},
                          {"keys", KeysJson(report.statuses)},
                          {"rotate_after_days", report.rotate_after_days},
                          {"policy_authenticated", report.authenticated},
                          {"master_slots", MasterSlotsJson(slots)},
                          {"master_slots_authenticated", slots_authenticated}};
    out["old_master_keys_to_destroy"] = PendingJson(pending);
    if (cert) {
      out["client_certificate"] = {
          {"file", cert->file},
          {"not_after", FormatUtc(cert->not_after)},
          {"days_left", cert->days_left},
          {"alert_days", cert->alert_days != 0 ? nlohmann::json(cert->alert_days) : nullptr}};
    }
    PrintJson(out);
  } else {
    PrintKeysTable(report);
    PrintMasterSlots(slots, pending, slots_authenticated);
    if (cert) {
      std::printf("client certificate %s expires %s (in %lld days)\n", cert->file.c_str(),
                  FormatUtc(cert->not_after).c_str(), static_cast<long long>(cert->days_left));
    }
  }
  if (prometheus) {
    PrometheusText metrics(volume_id);
    AddKeyMetrics(metrics, report);
    prometheus->Write(metrics.Text());
  }
  bool due = false;
  if (args.check && RotationOverdue(report.statuses)) {
    WarnOverdue(report, SuggestCommand(args, "keys rotate", dir));
    due = true;
  }
  if (args.check && cert && cert->alert_days != 0) {
    std::fprintf(stderr,
                 "envelopectl: client certificate %s expires in %lld days (%s; alert at %d "
                 "days): renew it\n",
                 EscapeName(cert->file).c_str(), static_cast<long long>(cert->days_left),
                 FormatUtc(cert->not_after).c_str(), cert->alert_days);
    due = true;
  }
  if (args.check && !pending.empty()) {
    std::fprintf(stderr,
                 "envelopectl: %zu old master key%s not destroyed yet (old keyring copies still "
                 "open with %s): run envelopectl keys destroy-old-master\n",
                 pending.size(), pending.size() == 1 ? " is" : "s are",
                 pending.size() == 1 ? "it" : "them");
    due = true;
  }
  return due ? kExitCheckFailed : kExitOk;
}

int KeysRotate(const Args& args, const fs::path& dir) {
  auto volume = OpenVolume(args, dir);
  KekInfo previous, fresh;
  volume->UpdateKeyring([&](Keyring& k) {
    previous = k.active();
    fresh = k.Rotate(NowUnix());
  });
  AppendAuditEvent(*volume, "kek_rotated",
                   {{"kek_version", fresh.version},
                    {"kek_id", fresh.id},
                    {"previous_kek_version", previous.version}});
  if (args.json) {
    PrintJson(
        {{"version", fresh.version}, {"kek_id", fresh.id}, {"previous_version", previous.version}});
  } else if (!args.quiet) {
    std::printf(
        "KEK version %u is now active; version %u is decrypt-only.\n"
        "New files use version %u. Run `%s` to move existing files.\n",
        fresh.version, previous.version, fresh.version,
        SuggestCommand(args, "rewrap", dir).c_str());
  }
  return kExitOk;
}

// The files whose headers still reference `kek` in either key slot (a rewrap interrupted
// between its two slot writes leaves the old version in one slot). Files whose header cannot be
// read or parsed count as users too: we cannot prove they do not need the key, and one flipped
// byte (reversible by the attacker once the key is gone) must not get a used key destroyed.
struct Users {
  uint64_t count = 0;
  std::vector<std::string> examples;
};

Users FindUsers(const Args& args, const Volume& volume, const KekInfo& kek) {
  NameTransform names = MakeNameTransform(volume);
  // Streamed (ParallelWalk): each worker keeps its count and its first few users (the walk hands
  // a worker its entries in walk order), so the named examples are the first in walk order.
  const unsigned jobs = JobCount(args);
  std::vector<uint64_t> count_of(jobs, 0);
  std::vector<std::vector<std::pair<uint64_t, std::string>>> examples_of(jobs);
  auto regular = [](const CipherEntry& e) { return e.type == DT_REG; };
  const bool bar = Progress::WantedFor(args);
  Progress progress(bar, "files", bar ? CountEntries(volume.cipher_dir(), names, regular) : 0);
  ParallelWalk(volume.cipher_dir(), names, {jobs, kWalkQueueCapacity}, regular,
               [&](unsigned worker, const CipherEntry& e, uint64_t index) {
                 HeaderRead r = ReadEntryHeader(volume.root_fd(), e);
                 progress.Add();
                 // A file deleted since the walk uses nothing; any other unreadable, damaged or
                 // foreign file might (a header whose magic was flipped looks like a file stored
                 // unencrypted).
                 bool uses = r.status != HeaderStatus::kOk &&
                             !(r.status == HeaderStatus::kUnreadable && r.error == ENOENT);
                 for (const KeySlotInfo& s : r.slots) {
                   uses = uses || (r.status == HeaderStatus::kOk && s.kek_id == kek.id &&
                                   s.kek_version == kek.version);
                 }
                 if (!uses) return;
                 ++count_of[worker];
                 if (examples_of[worker].size() < kFilesNamed) {
                   examples_of[worker].emplace_back(
                       index, EscapeName(DisplayName(e)) +
                                  (r.status != HeaderStatus::kOk ? " (" + r.reason + ")" : ""));
                 }
               });
  Users users;
  std::vector<std::pair<uint64_t, std::string>> examples;
  for (unsigned w = 0; w < jobs; ++w) {
    users.count += count_of[w];
    for (auto& example : examples_of[w]) examples.push_back(std::move(example));
  }
  std::sort(examples.begin(), examples.end());
  for (size_t i = 0; i < examples.size() && i < kFilesNamed; ++i) {
    users.examples.push_back(std::move(examples[i].second));
  }
  return users;
}

KekInfo FindVersion(const Volume& volume, uint32_t version) {
  for (const KekInfo& k : volume.Keks()) {
    if (k.version == version) return k;
  }
  throw Error(ErrorKind::kUsage, "no KEK version " + std::to_string(version));
}

int KeysRetire(const Args& args, const fs::path& dir) {
  if (!args.kek_version) throw Error(ErrorKind::kUsage, "keys retire needs --kek-version N");
  if (args.destroy_old_master) CheckCanDestroyOldMaster(args);
  auto volume = OpenVolume(args, dir);
  const KekInfo kek = FindVersion(*volume, *args.kek_version);
  if (kek.state == KekState::kRetired) {
    if (!args.quiet) std::printf("KEK version %u is already retired\n", kek.version);
    return kExitOk;
  }
  if (kek.state == KekState::kActive) {
    throw Error(ErrorKind::kState, "version " + std::to_string(kek.version) +
                                       " is the active version; run " +
                                       SuggestCommand(args, "keys rotate", dir) + " and " +
                                       SuggestCommand(args, "rewrap", dir) + " first");
  }
  Users users = FindUsers(args, *volume, kek);
  if (users.count > 0) {
    std::string list;
    for (const std::string& e : users.examples) list += (list.empty() ? "" : ", ") + e;
    throw Error(ErrorKind::kState, "version " + std::to_string(kek.version) + " is still used by " +
                                       std::to_string(users.count) + " file" +
                                       (users.count == 1 ? "" : "s") + ", e.g. " + list +
                                       (users.count > users.examples.size() ? ", ..." : "") +
                                       "; run " + SuggestCommand(args, "rewrap", dir) + " first");
  }
  if (args.destroy_old_master) return RetireAndDestroyOldMaster(args, *volume, kek);
  volume->UpdateKeyring([&](Keyring& k) { k.Retire(kek.version); });
  AppendAuditEvent(*volume, "version_retired", {{"kek_version", kek.version}, {"kek_id", kek.id}});
  if (!args.quiet) {
    std::printf("KEK version %u retired: its key material is destroyed.\n", kek.version);
  }
  return kExitOk;
}

int KeysPolicy(const Args& args, const fs::path& dir) {
  const bool change = args.rotate_after_days || args.audit_log;
  auto volume = OpenVolume(args, dir, /*log_unlock=*/change);
  VolumePolicy before = volume->policy();
  if (change) {
    volume->UpdateKeyring([&](Keyring& k) {
      VolumePolicy p = k.policy();
      if (args.rotate_after_days) p.rotate_after_days = *args.rotate_after_days;
      if (args.audit_log) p.audit_log = *args.audit_log;
      k.set_policy(p);
    });
    const VolumePolicy after = volume->policy();
    // Recorded even when the log is turned off by this change (then in syslog only).
    AppendAuditEvent(*volume, "policy_changed",
                     {{"rotate_after_days", after.rotate_after_days},
                      {"previous_rotate_after_days", before.rotate_after_days},
                      {"audit_log", after.audit_log},
                      {"previous_audit_log", before.audit_log}});
  }
  const VolumePolicy p = volume->policy();
  if (args.json) {
    PrintJson({{"rotate_after_days", p.rotate_after_days}, {"audit_log", p.audit_log}});
  } else if (!args.quiet) {
    std::printf("rotate_after_days: %u\naudit_log: %s\n", p.rotate_after_days,
                p.audit_log ? "on" : "off");
  }
  return kExitOk;
}

}  // namespace

int RunKeys(const Args& args) {
  if (args.words.size() != 3)
    throw Error(ErrorKind::kUsage, std::string("usage: envelopectl ") + kKeysUsage);
  const std::string& sub = args.words[1];
  const fs::path dir = args.words[2];
  RequireVolumeRoot(dir);
  if (args.prometheus && sub != "list") {
    throw Error(ErrorKind::kUsage, "--prometheus is for keys list and audit");
  }
  if (sub == "list") return KeysList(args, dir);
  if (sub == "rotate") return KeysRotate(args, dir);
  if (sub == "retire") return KeysRetire(args, dir);
  if (sub == "change-master") return KeysChangeMaster(args, dir);
  if (sub == "add-master") return KeysAddMaster(args, dir);
  if (sub == "remove-master") return KeysRemoveMaster(args, dir);
  if (sub == "destroy-old-master") return KeysDestroyOldMaster(args, dir);
  if (sub == "policy") return KeysPolicy(args, dir);
  throw Error(ErrorKind::kUsage,
              "unknown keys command \"" + sub + "\"; usage: envelopectl " + kKeysUsage);
}

}  // namespace envelopefs::cli
