// envelopectl audit — the compliance report of a volume, from headers alone (512 bytes per
// file, read in parallel): files per KEK version, duplicate file ids and DEKs, files stored
// unencrypted, damaged headers, names that do not authenticate, chunk sizes and ciphers in use,
// and key ages against the rotation policy. Works without a key (then DEKs are not unwrapped:
// duplicate wrapped-DEK records are reported instead, names are not checked, and the key
// versions and policy are the keyring's claims, reported as not authenticated). Optionally
// writes the report as Prometheus textfile metrics.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "cli.h"
#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/key_policy.h"
#include "envelopefs/keyring.h"
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

// Groups of files (cipher paths) sharing a key, counting hard links to one inode once. Sorted
// vectors rather than maps: about 50 bytes a file, for a million files.
template <typename Key>
json DuplicateGroups(const std::vector<CipherEntry>& files, const std::vector<FileFacts>& facts,
                     const std::function<std::optional<Key>(const FileFacts&)>& key_of) {
  // The first file of every inode.
  std::vector<size_t> order(files.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(facts[a].dev, facts[a].ino, a) < std::tie(facts[b].dev, facts[b].ino, b);
  });
  std::vector<std::pair<Key, size_t>> keyed;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    if (k > 0 && facts[order[k - 1]].dev == facts[i].dev &&
        facts[order[k - 1]].ino == facts[i].ino) {
      continue;  // another link to an inode already counted
    }
    if (std::optional<Key> key = key_of(facts[i])) keyed.emplace_back(*key, i);
  }
  std::vector<size_t>().swap(order);
  std::sort(keyed.begin(), keyed.end());
  json out = json::array();
  for (size_t a = 0; a < keyed.size();) {
    size_t b = a + 1;
    while (b < keyed.size() && keyed[b].first == keyed[a].first) ++b;
    if (b - a >= 2) {
      json group = json::array();
      for (size_t k = a; k < b; ++k) group.push_back(files[keyed[k].second].cipher_path);
      out.push_back(group);
    }
    a = b;
  }
  return out;
}

struct AuditInput {
  fs::path dir;
  UniqueFd root;  // the cipher dir (O_PATH)
  VolumeConfig config;
  KeyPolicyReport keys;            // authenticated with the key; as claimed by the keyring without
  std::unique_ptr<Volume> volume;  // null without a key
  std::vector<CipherEntry> entries;
  std::vector<MasterSlot> slots;         // authenticated with the key, else as claimed
  std::vector<MasterKeyParams> pending;  // old master keys still to destroy
};

AuditInput Load(const Args& args, const fs::path& dir) {
  AuditInput in;
  in.dir = dir;
  in.root = OpenRoot(dir);
  std::optional<NameTransform> names;
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
  in.entries = CollectEntries(dir, *names);
  return in;
}

std::vector<FileFacts> ExamineAll(const Args& args, int root_fd,
                                  const std::vector<CipherEntry>& files, const Volume* volume) {
  std::optional<KekTable> keks;
  if (volume != nullptr) keks.emplace(*volume);
  std::vector<FileFacts> facts(files.size());
  Progress progress(Progress::WantedFor(args), "files", files.size());
  ParallelFor(files.size(), JobCount(args), [&](size_t i) {
    facts[i] = Examine(root_fd, files[i], keks ? &*keks : nullptr);
    progress.Add();
  });
  return facts;
}

// Counts and lists over all files' facts.
struct Tally {
  std::map<std::string, uint64_t> by_version, chunk_sizes, ciphers, formats;
  json unencrypted = json::array(), damaged = json::array(), unsealed = json::array();
  size_t inodes = 0;  // distinct (hard links count once)
};

Tally Count(const std::vector<CipherEntry>& files, const std::vector<FileFacts>& facts) {
  Tally t;
  std::vector<std::pair<dev_t, ino_t>> inodes;
  inodes.reserve(files.size());
  for (const FileFacts& f : facts) inodes.emplace_back(f.dev, f.ino);
  std::sort(inodes.begin(), inodes.end());
  t.inodes = static_cast<size_t>(std::unique(inodes.begin(), inodes.end()) - inodes.begin());
  for (size_t i = 0; i < files.size(); ++i) {
    const FileFacts& f = facts[i];
    if (f.status == HeaderStatus::kNotEnvelope) {
      t.unencrypted.push_back(files[i].cipher_path);
      continue;
    }
    if (f.status == HeaderStatus::kOk) {
      ++t.by_version[std::to_string(f.kek_version)];
      ++t.chunk_sizes[std::to_string(f.chunk_size)];
      ++t.formats[std::to_string(f.format_version)];
      ++t.ciphers[kCipherName];
    }
    if (f.unsealed) t.unsealed.push_back(files[i].cipher_path);
    if (!f.problem.empty()) {
      t.damaged.push_back({{"cipher_path", files[i].cipher_path}, {"reason", f.problem}});
    }
  }
  return t;
}

std::optional<FileId> FileIdOf(const FileFacts& f) {
  if (f.status != HeaderStatus::kOk) return std::nullopt;
  return f.file_id;
}

std::optional<Sha256Digest> DekOf(const FileFacts& f) {
  if (!f.dek_known) return std::nullopt;
  return f.dek_key;
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

// Takes the entries out of `in` (regular files are moved, not copied: 100k paths).
json Report(const Args& args, AuditInput& in) {
  std::vector<CipherEntry> files;
  json bad_names = json::array();
  const bool names_checked = in.volume != nullptr || in.config.plaintext_names;
  const size_t entry_count = in.entries.size();
  for (CipherEntry& e : in.entries) {
    if (names_checked && !e.name_ok) bad_names.push_back(e.cipher_path);
    if (e.type == DT_REG) files.push_back(std::move(e));
  }
  in.entries.clear();
  in.entries.shrink_to_fit();
  const std::vector<FileFacts> facts = ExamineAll(args, in.root.get(), files, in.volume.get());
  const Tally t = Count(files, facts);
  const bool keyed = in.volume != nullptr;
  const json dek_groups = DuplicateGroups<Sha256Digest>(files, facts, DekOf);
  return {
      {"timestamp", FormatUtc(in.keys.now)},
      {"volume_id", ToHex(in.config.volume_id)},
      {"tool_version", ENVELOPEFS_VERSION},
      {"cipher_dir", fs::absolute(in.dir).string()},
      {"key_given", keyed},
      {"files", files.size()},
      {"inodes", t.inodes},
      {"entries", entry_count},
      {"by_kek_version", t.by_version},
      {"duplicate_file_ids", DuplicateGroups<FileId>(files, facts, FileIdOf)},
      {"duplicate_deks", keyed ? dek_groups : json(nullptr)},
      {"duplicate_wrapped_deks", keyed ? json(nullptr) : dek_groups},
      {"unencrypted", t.unencrypted},
      {"damaged", t.damaged},
      {"unsealed", keyed ? t.unsealed : json(nullptr)},
      {"format_versions", t.formats},
      {"bad_names", names_checked ? bad_names : json(nullptr)},
      {"chunk_sizes", t.chunk_sizes},
      {"ciphers", t.ciphers},
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
