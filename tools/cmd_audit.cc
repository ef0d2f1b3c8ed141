// envelopectl audit — the compliance report of a volume, from headers alone (512 bytes per
// file, read in parallel): files per KEK version, duplicate file ids and DEKs, files stored
// unencrypted, damaged headers, names that do not authenticate, chunk sizes and ciphers in use,
// and key ages against the rotation policy. Works without a key (then DEKs are not unwrapped:
// duplicate wrapped-DEK records are reported instead, names are not checked, and the key
// versions and policy are the keyring's claims, reported as not authenticated). Optionally
// writes the report as Prometheus textfile metrics. Streams the walk (ParallelWalk): memory is
// a fixed amount, the files it lists, and a 40-byte fingerprint per file for the duplicate
// checks (audit_duplicates.h).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>
#include <vector>

#include "audit_duplicates.h"
#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/key_policy.h"
#include "envelopefs/keyring.h"
#include "envelopefs/parallel_walk.h"
#include "envelopefs/unique_fd.h"
#include "keys_master.h"
#include "progress.h"
#include "prometheus.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kNameKeyBytes = 64;  // AES-256-SIV

// What the audit keeps of one regular file (the header itself is not kept: 100k files).
struct FileFacts {
  HeaderStatus status = HeaderStatus::kUnreadable;
  std::string problem;  // not ok: why (also set for authentication failures with the key)
  uint32_t chunk_size = 0;
  uint32_t kek_version = 0;
  uint16_t format_version = 0;
  bool unsealed = false;  // with the key: the last write was interrupted (length unproven)
  FileId file_id{};
  Sha256Digest dek_key{};  // DEK fingerprint (with key) or SHA-256 of the wrapped record
  bool dek_known = false;
  dev_t dev = 0;
  ino_t ino = 0;
};

FileFacts Examine(int root_fd, const CipherEntry& entry, const KekTable* keks) {
  FileFacts f;
  HeaderRead h = ReadEntryHeader(root_fd, entry);
  f.status = h.status;
  f.dev = h.dev;
  f.ino = h.ino;
  if (h.status != HeaderStatus::kOk) {
    f.problem = h.reason;
    return f;
  }
  f.chunk_size = h.fixed.chunk_size;
  f.format_version = h.fixed.version;
  f.file_id = h.fixed.file_id;
  int slot = h.NewestSlot();
  if (keks != nullptr) {
    HeaderCheck check = CheckHeader(h, *keks);
    if (check.slot >= 0) slot = check.slot;
    if (check.ok) {
      f.dek_key = check.dek_fingerprint;
      f.dek_known = true;
      f.unsealed = !check.state.sealed();
    } else {
      f.problem = check.reason;
    }
  } else {
    // Without the key, the wrapped record (nonce, ciphertext, tag) of the newest slot.
    f.dek_key = WrappedDekDigest(h, slot);
    f.dek_known = true;
    if (auto problem = LengthProblem(h, nullptr)) f.problem = *problem;
  }
  f.kek_version = h.slots[slot].kek_version;
  return f;
}

struct AuditInput {
  fs::path dir;
  UniqueFd root;  // the cipher dir (O_PATH)
  VolumeConfig config;
  KeyPolicyReport keys;            // authenticated with the key; as claimed by the keyring without
  std::unique_ptr<Volume> volume;  // null without a key
  std::optional<NameTransform> names;
  std::vector<MasterSlot> slots;         // authenticated with the key, else as claimed
  std::vector<MasterKeyParams> pending;  // old master keys still to destroy
};

AuditInput Load(const Args& args, const fs::path& dir) {
  AuditInput in;
  in.dir = dir;
  in.root = OpenRoot(dir);
  std::optional<NameTransform>& names = in.names;
  if (args.HasKey()) {
    in.volume = OpenVolume(args, dir, /*log_unlock=*/false);
    in.config = in.volume->config();
    in.keys = KeyPolicyOf(*in.volume);
    in.slots = in.volume->master_slots();
    in.pending = in.volume->pending_destroy();
    names.emplace(MakeNameTransform(*in.volume));
  } else {
    // No key: a NameTransform with zero keys still knows exactly which backing entries are the
    // volume's own (long names, IVs, temp files); with encrypted names no name decrypts, so
    // names are not checked (bad_names is null).
    in.config = VolumeConfig::LoadAt(in.root.get(), dir);
    in.keys = ClaimedKeyPolicy(in.root.get(), dir, in.config);
    const KeyringFile keyring = KeyringFile::Read(in.root.get(), dir);
    in.slots = keyring.slots(in.config);
    in.pending = keyring.pending_destroy();
    names.emplace(SecureBytes(kNameKeyBytes), SecureBytes(kKeySize), in.config.plaintext_names,
                  in.config.format_version);
  }
  return in;
}

std::optional<FileId> FileIdOf(const FileFacts& f) {
  if (f.status != HeaderStatus::kOk) return std::nullopt;
  return f.file_id;
}

std::optional<Sha256Digest> DekOf(const FileFacts& f) {
  if (!f.dek_known) return std::nullopt;
  return f.dek_key;
}

// One listed file (unencrypted, damaged, unsealed) at its walk index: reported in walk order.
struct Listed {
  uint64_t index;
  std::string cipher_path;
  std::string reason;  // damaged only
};

// Counts and lists over the files one worker examined; merged at the end. Per file only the
// FilePrint (40 bytes) is kept, and the lists, which name only files with a problem.
struct Tally {
  std::map<uint32_t, uint64_t> by_version, chunk_sizes, formats;
  uint64_t files = 0, ok = 0;
  std::vector<Listed> unencrypted, damaged, unsealed;
  std::vector<FilePrint> prints;

  void Add(uint64_t index, const CipherEntry& e, const FileFacts& f) {
    ++files;
    prints.push_back(MakePrint(index, f.dev, f.ino, FileIdOf(f), DekOf(f)));
    if (f.status == HeaderStatus::kNotEnvelope) {
      unencrypted.push_back({index, e.cipher_path, ""});
      return;
    }
    if (f.status == HeaderStatus::kOk) {
      ++by_version[f.kek_version];
      ++chunk_sizes[f.chunk_size];
      ++formats[f.format_version];
      ++ok;
    }
    if (f.unsealed) unsealed.push_back({index, e.cipher_path, ""});
    if (!f.problem.empty()) damaged.push_back({index, e.cipher_path, f.problem});
  }

  void Merge(Tally&& o) {
    for (const auto& [k, n] : o.by_version) by_version[k] += n;
    for (const auto& [k, n] : o.chunk_sizes) chunk_sizes[k] += n;
    for (const auto& [k, n] : o.formats) formats[k] += n;
    files += o.files;
    ok += o.ok;
    for (auto list : {&Tally::unencrypted, &Tally::damaged, &Tally::unsealed}) {
      for (Listed& l : o.*list) (this->*list).push_back(std::move(l));
    }
    prints.insert(prints.end(), o.prints.begin(), o.prints.end());
    o = Tally();
  }
};

json CountsJson(const std::map<uint32_t, uint64_t>& counts) {
  std::map<std::string, uint64_t> out;
  for (const auto& [k, n] : counts) out[std::to_string(k)] = n;
  return out;
}

// Paths (or, with reasons, {cipher_path, reason}) in walk order.
json ListJson(std::vector<Listed>& list, bool with_reason) {
  std::sort(list.begin(), list.end(),
            [](const Listed& a, const Listed& b) { return a.index < b.index; });
  json out = json::array();
  for (const Listed& l : list) {
    out.push_back(with_reason ? json{{"cipher_path", l.cipher_path}, {"reason", l.reason}}
                              : json(l.cipher_path));
  }
  return out;
}

// Examines every regular file's header in parallel, streaming the walk; collects the names
// that do not authenticate (on the walking thread, in walk order).
Tally ExamineAll(const Args& args, AuditInput& in, bool names_checked, json* bad_names,
                 uint64_t* entries) {
  std::optional<KekTable> keks;
  if (in.volume != nullptr) keks.emplace(*in.volume);
  const unsigned jobs = JobCount(args);
  std::vector<Tally> tallies(jobs);
  // On a terminal, a first walk counts the files for the bar (it keeps nothing).
  const bool bar = Progress::WantedFor(args);
  auto regular = [](const CipherEntry& e) { return e.type == DT_REG; };
  Progress progress(bar, "files", bar ? CountEntries(in.dir, *in.names, regular) : 0);
  *entries = ParallelWalk(
      in.dir, *in.names, {jobs, kWalkQueueCapacity},
      [&](const CipherEntry& e) {
        if (names_checked && !e.name_ok) bad_names->push_back(e.cipher_path);
        return e.type == DT_REG;
      },
      [&](unsigned worker, const CipherEntry& e, uint64_t index) {
        tallies[worker].Add(index, e, Examine(in.root.get(), e, keks ? &*keks : nullptr));
        progress.Add();
      });
  progress.Finish();
  Tally total;
  for (Tally& t : tallies) total.Merge(std::move(t));
  return total;
}

// The second walk, only when short fingerprints collide: the candidates' full file ids and
// DEK fingerprints and their paths, grouped exactly. A file changed between the walks is
// judged by what it holds now.
void ExactDuplicates(const AuditInput& in, const DuplicateCandidates& c, json* file_id_groups,
                     json* dek_groups) {
  *file_id_groups = json::array();
  *dek_groups = json::array();
  if (c.file_id_indices.empty() && c.dek_indices.empty()) return;
  std::optional<KekTable> keks;
  if (in.volume != nullptr) keks.emplace(*in.volume);
  std::vector<Candidate<FileId>> ids;
  std::vector<Candidate<Sha256Digest>> deks;
  uint64_t index = 0;
  auto among = [](const std::vector<uint64_t>& sorted, uint64_t i) {
    return std::binary_search(sorted.begin(), sorted.end(), i);
  };
  WalkCipherDir(in.dir, *in.names, [&](const CipherEntry& e) {
    const uint64_t i = index++;
    const bool id_wanted = among(c.file_id_indices, i);
    const bool dek_wanted = among(c.dek_indices, i);
    if (e.type != DT_REG || (!id_wanted && !dek_wanted)) return;
    const FileFacts f = Examine(in.root.get(), e, keks ? &*keks : nullptr);
    if (id_wanted) {
      if (auto id = FileIdOf(f)) ids.push_back({*id, i, e.cipher_path});
    }
    if (dek_wanted) {
      if (auto dek = DekOf(f)) deks.push_back({*dek, i, e.cipher_path});
    }
  });
  *file_id_groups = GroupExact(std::move(ids));
  *dek_groups = GroupExact(std::move(deks));
}

json AuditLogJson(const AuditLogReport& r) {
  return {{"present", r.present},
          {"lines", r.lines},
          {"legacy_lines", r.legacy},
          {"authenticated_lines", r.key_used ? json(r.authenticated) : json(nullptr)},
          {"unauthenticated_lines", r.unauthenticated},
          {"last_sequence", r.last_sequence},
          {"trailing_unproven", r.trailing_unproven},
          {"problems", r.problems}};
}

// Streams the walk (ExamineAll), then the duplicate checks (FindCandidates, ExactDuplicates).
json Report(const Args& args, AuditInput& in) {
  json bad_names = json::array();
  const bool names_checked = in.volume != nullptr || in.config.plaintext_names;
  uint64_t entry_count = 0;
  Tally t = ExamineAll(args, in, names_checked, &bad_names, &entry_count);
  const DuplicateCandidates candidates = FindCandidates(std::move(t.prints));
  json file_id_groups, dek_groups;
  ExactDuplicates(in, candidates, &file_id_groups, &dek_groups);
  const bool keyed = in.volume != nullptr;
  return {
      {"timestamp", FormatUtc(in.keys.now)},
      {"volume_id", ToHex(in.config.volume_id)},
      {"tool_version", ENVELOPEFS_VERSION},
      {"cipher_dir", fs::absolute(in.dir).string()},
      {"key_given", keyed},
      {"files", t.files},
      {"inodes", candidates.inodes},
      {"entries", entry_count},
      {"by_kek_version", CountsJson(t.by_version)},
      {"duplicate_file_ids", file_id_groups},
      {"duplicate_deks", keyed ? dek_groups : json(nullptr)},
      {"duplicate_wrapped_deks", keyed ? json(nullptr) : dek_groups},
      {"unencrypted", ListJson(t.unencrypted, false)},
      {"damaged", ListJson(t.damaged, true)},
      {"unsealed", keyed ? ListJson(t.unsealed, false) : json(nullptr)},
      {"format_versions", CountsJson(t.formats)},
      {"bad_names", names_checked ? bad_names : json(nullptr)},
      {"chunk_sizes", CountsJson(t.chunk_sizes)},
      {"ciphers", t.ok > 0 ? json{{kCipherName, t.ok}} : json::object()},
      {"rotate_after_days", in.keys.rotate_after_days},
      {"policy_authenticated", in.keys.authenticated},
      {"keys", KeysJson(in.keys.statuses)},
      {"rotation_overdue", RotationOverdue(in.keys.statuses)},
      {"master_slots", MasterSlotsJson(in.slots)},
      {"master_slots_authenticated", keyed},
      {"old_master_keys_to_destroy", PendingJson(in.pending)},
      {"audit_log", AuditLogJson(VerifyAuditLog(in.root.get(), in.config,
                                                keyed ? &in.volume->audit_key() : nullptr))},
  };
}

bool Clean(const json& r) {
  for (const char* key : {"duplicate_file_ids", "duplicate_deks", "duplicate_wrapped_deks",
                          "unencrypted", "damaged", "unsealed", "bad_names"}) {
    if (r[key].is_array() && !r[key].empty()) return false;
  }
  if (!r["audit_log"]["problems"].empty()) return false;
  return !r["rotation_overdue"].get<bool>();
}

std::string Counts(const json& object) {
  std::string out;
  for (const auto& [key, value] : object.items()) {
    out += (out.empty() ? "" : ", ") + key + ": " + std::to_string(value.get<uint64_t>());
  }
  return out.empty() ? "-" : out;
}

// Prints "label: N" and then each item (arrays of paths, groups or {cipher_path, reason}).
// Paths are the attacker's choice: escaped, so they cannot drive the terminal or forge a line.
void PrintList(const char* label, const json& list, const char* if_null) {
  if (list.is_null()) {
    std::printf("%-24s %s\n", label, if_null);
    return;
  }
  std::printf("%-24s %zu\n", label, list.size());
  for (const json& item : list) {
    if (item.is_string()) {
      std::printf("  %s\n", EscapeName(item.get<std::string>()).c_str());
    } else if (item.is_array()) {
      std::string group;
      for (const json& p : item) {
        group += (group.empty() ? "" : " = ") + EscapeName(p.get<std::string>());
      }
      std::printf("  %s\n", group.c_str());
    } else {
      std::printf("  %s: %s\n", EscapeName(item["cipher_path"].get<std::string>()).c_str(),
                  EscapeName(item["reason"].get<std::string>()).c_str());
    }
  }
}

void PrintReport(const json& r, const KeyPolicyReport& keys) {
  std::printf("envelopefs audit of %s (%s)\n", r["cipher_dir"].get<std::string>().c_str(),
              r["timestamp"].get<std::string>().c_str());
  std::printf("%-24s %llu (%llu distinct inodes)\n", "files:", r["files"].get<unsigned long long>(),
              r["inodes"].get<unsigned long long>());
  std::printf("%-24s %s\n", "files by KEK version:", Counts(r["by_kek_version"]).c_str());
  std::printf("%-24s %s\n", "chunk sizes:", Counts(r["chunk_sizes"]).c_str());
  std::printf("%-24s %s\n", "file format versions:", Counts(r["format_versions"]).c_str());
  std::printf("%-24s %s\n", "ciphers:", Counts(r["ciphers"]).c_str());
  PrintList("duplicate file ids:", r["duplicate_file_ids"], "");
  if (r["key_given"].get<bool>()) {
    PrintList("duplicate DEKs:", r["duplicate_deks"], "");
  } else {
    PrintList("duplicate wrapped DEKs:", r["duplicate_wrapped_deks"], "");
    std::printf("  (no key given: DEKs were not unwrapped, headers and names not authenticated)\n");
  }
  std::string slots;
  for (const json& s : r["master_slots"]) {
    slots += (slots.empty() ? "" : ", ") + std::to_string(s["slot"].get<int>()) + " " +
             s["source"].get<std::string>();
  }
  std::printf("%-24s %s\n", "master slots:", slots.c_str());
  PrintList("old masters to destroy:", r["old_master_keys_to_destroy"], "");
  if (!r["master_slots_authenticated"].get<bool>()) {
    std::printf("  (no key given: master slots and old masters as claimed, not authenticated)\n");
  }
  PrintList("stored unencrypted:", r["unencrypted"], "");
  PrintList("damaged:", r["damaged"], "");
  PrintList("unsealed:", r["unsealed"], "not checked (no key given)");
  if (r["unsealed"].is_array() && !r["unsealed"].empty()) {
    std::printf(
        "  (being written on a mount right now, or a write interrupted by a crash, or an "
        "older state put back)\n");
  }
  PrintList("names not authentic:", r["bad_names"], "not checked (no key given)");
  std::printf("keys:\n");
  PrintKeysTable(keys);
  if (r["rotation_overdue"].get<bool>()) std::printf("  ROTATION OVERDUE\n");
  const json& log = r["audit_log"];
  if (!log["present"].get<bool>()) {
    std::printf("%-24s none\n", "audit log:");
  } else {
    std::printf(
        "%-24s %llu lines, %s\n", "audit log:", log["lines"].get<unsigned long long>(),
        log["authenticated_lines"].is_null()
            ? "chain checked (no key given: MACs not checked)"
            : (std::to_string(log["authenticated_lines"].get<uint64_t>()) + " authenticated, " +
               std::to_string(log["unauthenticated_lines"].get<uint64_t>()) +
               " without a MAC (failed unlocks), " +
               std::to_string(log["legacy_lines"].get<uint64_t>()) + " from before chaining")
                  .c_str());
  }
  for (const json& p : log["problems"]) {
    std::printf("  %s\n", EscapeName(p.get<std::string>()).c_str());
  }
  if (log.value("trailing_unproven", 0) > 0) {
    std::printf(
        "  %llu lines at the end carry no MAC yet (failed unlocks; nothing vouches for "
        "them)\n",
        log["trailing_unproven"].get<unsigned long long>());
  }
  std::printf("result: %s%s\n", Clean(r) ? "OK" : "PROBLEMS FOUND",
              r["key_given"].get<bool>() ? "" : " (no key given: nothing above is authenticated)");
}

// The report as node_exporter textfile metrics (see envelopectl(1), METRICS).
std::string Metrics(const json& r, const KeyPolicyReport& keys) {
  PrometheusText out(r["volume_id"].get<std::string>());
  AddKeyMetrics(out, keys);
  out.Gauge("files", "Regular files in the cipher dir (hard links counted per name).",
            r["files"].get<double>());
  // Every version the keyring lists (0 when no file uses it), then any other a header names.
  std::map<uint32_t, double> by_version;
  for (const KekPolicyStatus& s : keys.statuses) by_version[s.info.version] = 0;
  for (const auto& [version, count] : r["by_kek_version"].items()) {
    by_version[static_cast<uint32_t>(std::stoul(version))] = count.get<double>();
  }
  for (const auto& [version, count] : by_version) {
    out.Gauge("files_by_kek_version", "Files whose header uses the KEK version.", count,
              {{"kek_version", std::to_string(version)}});
  }
  out.Gauge("unencrypted_files", "Files in the cipher dir that are not envelopefs files.",
            static_cast<double>(r["unencrypted"].size()));
  out.Gauge("damaged_files", "Files whose header is damaged or does not authenticate.",
            static_cast<double>(r["damaged"].size()));
  out.Gauge("duplicate_file_id_groups", "Groups of distinct files sharing one file id.",
            static_cast<double>(r["duplicate_file_ids"].size()));
  const json& deks = r["key_given"].get<bool>() ? r["duplicate_deks"] : r["duplicate_wrapped_deks"];
  out.Gauge("duplicate_dek_groups",
            "Groups of distinct files sharing one DEK (without a key: one wrapped DEK record).",
            static_cast<double>(deks.size()));
  if (r["unsealed"].is_array()) {
    out.Gauge("unsealed_files", "Files whose last write was not sealed (checked with a key only).",
              static_cast<double>(r["unsealed"].size()));
  }
  if (r["bad_names"].is_array()) {
    out.Gauge("bad_names", "Names that do not authenticate (absent when names were not checked).",
              static_cast<double>(r["bad_names"].size()));
  }
  out.Gauge("audit_log_problems", "Problems found in the audit log (chain, MACs, end).",
            static_cast<double>(r["audit_log"]["problems"].size()));
  out.Gauge("audit_ok", "1 if the audit found no problem (its result: OK), else 0.",
            Clean(r) ? 1 : 0);
  return out.Text();
}

}  // namespace

int RunAudit(const Args& args) {
  ExpectArgs(args, 1, 1,
             "audit CIPHERDIR [--json] [--jobs N] [--prometheus FILE] "
             "[--keyfile FILE | --passfile FILE]");
  const fs::path dir = args.words[1];
  RequireVolumeRoot(dir);
  const std::optional<PrometheusFile> prometheus = PrometheusFileFor(args);
  AuditInput in = Load(args, dir);
  json report = Report(args, in);
  if (args.json) {
    PrintJson(report);
  } else {
    PrintReport(report, in.keys);
  }
  if (prometheus) prometheus->Write(Metrics(report, in.keys));
  return Clean(report) ? kExitOk : kExitDamaged;
}

}  // namespace envelopefs::cli
