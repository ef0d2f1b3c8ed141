// Tests of monitoring a volume without its key and of the audit log as an auditor reads it:
// `keys list --check` and `audit` run without the master key (the keyring as stored, reported as
// not authenticated; an overdue key still fails the check), `--prometheus FILE` writes
// node_exporter textfile metrics atomically with the right numbers, and the audit log records
// volume creation and key events with one field name per concept while read-only commands log
// no unlocks. Offline volumes only (OfflineVolume, no FUSE).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "offline_volume.h"

namespace envelopefs::testing {
namespace {

using nlohmann::json;

const std::string kCtl = ENVELOPECTL_BINARY;

// Runs envelopectl without any key option; `rc` gets its exit code.
CommandResult Keyless(const std::string& args) { return RunCommand(kCtl + " " + args); }

json ParseJson(const CommandResult& r) {
  json j = json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.output;
  return j;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<json> AuditEvents(const OfflineVolume& v) {
  std::vector<json> out;
  for (const std::string& line : SplitLines(ReadFile(v.cipher() / "envelopefs.audit.log"))) {
    out.push_back(json::parse(line));
  }
  return out;
}

std::string VolumeId(const OfflineVolume& v) {
  return ParseJson(Keyless("keys list --json " + Quote(v.cipher()) + " 2>/dev/null"))["volume_id"];
}

// `toml` with the value of every line "KEY = ..." replaced by `value`.
std::string SetTomlValues(const std::string& toml, const std::string& key,
                          const std::string& value) {
  std::string out;
  for (const std::string& line : SplitLines(toml)) {
    out += (line.rfind(key + " = ", 0) == 0 ? key + " = " + value : line) + "\n";
  }
  return out;
}

// Sets the creation time of every KEK in the stored keyring (an edit only a keyless reader
// accepts: it breaks the keyring's MAC).
void SetKeyringCreated(const OfflineVolume& v, const std::string& when) {
  const fs::path file = v.cipher() / "envelopefs.keyring";
  WriteFile(file, SetTomlValues(ReadFile(file), "created", when));
}

bool IsMetricName(const std::string& name) {
  return name.rfind("envelopefs_", 0) == 0 &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
}

// `text` as a number, or nullopt unless all of it is one (e.g. "-12", "1795535186", "0.5").
std::optional<double> Number(const std::string& text) {
  if (text.empty() || text.find_first_not_of("-0123456789.") != std::string::npos) {
    return std::nullopt;
  }
  size_t used = 0;
  double value = std::stod(text, &used);
  return used == text.size() ? std::optional<double>(value) : std::nullopt;
}

// A parsed textfile: metric samples by "name{labels}" (volume_id label left out), checking the
// exposition format line by line: every sample's metric has its HELP and TYPE lines first, and
// every sample carries `volume_id`.
struct Metrics {
  std::map<std::string, double> samples;
};

Metrics ParseMetrics(const std::string& text, const std::string& volume_id) {
  Metrics m;
  std::map<std::string, int> described;  // name -> 1 after HELP, 2 after TYPE
  for (const std::string& line : SplitLines(text)) {
    if (line.rfind("# HELP ", 0) == 0) {
      const size_t end = line.find(' ', 7);
      const std::string name = line.substr(7, end - 7);
      EXPECT_TRUE(IsMetricName(name) && end != std::string::npos && end + 1 < line.size()) << line;
      EXPECT_EQ(0, described[name]) << "HELP twice: " << line;
      described[name] = 1;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ("# TYPE " + name + " gauge", line);
      EXPECT_EQ(1, described[name]) << "TYPE without HELP: " << line;
      described[name] = 2;
    } else {
      // name{volume_id="...",label="value",...} value
      const size_t open = line.find('{'), close = line.find("} ");
      if (open == std::string::npos || close == std::string::npos || close < open) {
        ADD_FAILURE() << "not a line of the text exposition format: \"" << line << "\"";
        continue;
      }
      const std::string name = line.substr(0, open);
      EXPECT_TRUE(IsMetricName(name)) << line;
      EXPECT_EQ(2, described[name]) << "sample before HELP and TYPE: " << line;
      const std::string id_label = "volume_id=\"" + volume_id + "\"";
      const std::string labels = line.substr(open + 1, close - open - 1);
      EXPECT_EQ(0u, labels.rfind(id_label, 0)) << line;
      std::string rest = labels.substr(std::min(labels.size(), id_label.size()));
      for (size_t at = 0; at < rest.size();) {  // ,key="value" each
        const size_t quote = rest.find("=\"", at), end = rest.find('"', quote + 2);
        EXPECT_TRUE(rest[at] == ',' && quote != std::string::npos && end != std::string::npos)
            << line;
        if (quote == std::string::npos || end == std::string::npos) break;
        at = end + 1;
      }
      const std::optional<double> value = Number(line.substr(close + 2));
      EXPECT_TRUE(value.has_value()) << line;
      const std::string key = name + "{" + rest + "}";
      EXPECT_EQ(0u, m.samples.count(key)) << "sample twice: " << line;
      m.samples[key] = value.value_or(-999999);
    }
  }
  return m;
}

// --- without the key -------------------------------------------------------------------------

TEST(Monitoring, KeysListWithoutTheKeyReportsTheStoredKeyringAsUnauthenticated) {
  OfflineVolume v;
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  CommandResult keyed =
      RunCommand(v.Ctl("keys list --check --json " + Quote(v.cipher())) + " 2>/dev/null");
  ASSERT_EQ(0, keyed.exit_code) << keyed.output;
  CommandResult keyless = Keyless("keys list --check --json " + Quote(v.cipher()) + " 2>/dev/null");
  ASSERT_EQ(0, keyless.exit_code) << keyless.output;
  json with_key = ParseJson(keyed), without = ParseJson(keyless);
  EXPECT_TRUE(with_key["policy_authenticated"].get<bool>());
  EXPECT_FALSE(without["policy_authenticated"].get<bool>());
  // The same keys; the days left may differ by one when the two runs straddle a second
  // (a key rotated now is due in exactly 90 days, one second later in 89 and a bit).
  ASSERT_EQ(with_key["keys"].size(), without["keys"].size());
  for (size_t i = 0; i < without["keys"].size(); ++i) {
    json a = with_key["keys"][i], b = without["keys"][i];
    if (a["days_to_rotation"].is_number() && b["days_to_rotation"].is_number()) {
      EXPECT_LE(std::abs(a["days_to_rotation"].get<int>() - b["days_to_rotation"].get<int>()), 1);
      a.erase("days_to_rotation");
      b.erase("days_to_rotation");
    }
    EXPECT_EQ(a, b);
  }
  EXPECT_EQ(with_key["rotate_after_days"], without["rotate_after_days"]);
  EXPECT_EQ(with_key["volume_id"], without["volume_id"]);
  ASSERT_EQ(2u, without["keys"].size());
  EXPECT_TRUE(without["keys"][1]["days_to_rotation"].is_number());
  EXPECT_TRUE(without["keys"][0]["days_to_rotation"].is_null()) << "only the active version";

  CommandResult audit = Keyless("audit " + Quote(v.cipher()));
  EXPECT_EQ(0, audit.exit_code) << audit.output;
  EXPECT_NE(std::string::npos, audit.output.find("result: OK (no key given: nothing above is "
                                                 "authenticated)"))
      << audit.output;
  CommandResult text = Keyless("keys list " + Quote(v.cipher()));
  EXPECT_EQ(0, text.exit_code);
  EXPECT_NE(std::string::npos, text.output.find("NOT authenticated")) << text.output;
  CommandResult keyed_text = RunCommand(v.Ctl("keys list " + Quote(v.cipher())));
  EXPECT_EQ(std::string::npos, keyed_text.output.find("authenticated")) << keyed_text.output;
}

TEST(Monitoring, AnOverdueKeyFailsTheKeylessCheckWhichNeverClaimsAuthentication) {
  OfflineVolume v;
  v.Write("f", "data");
  SetKeyringCreated(v, "2020-01-01T00:00:00Z");
  // A cron job without the key gets the overdue exit code.
  CommandResult check = Keyless("keys list --check --json " + Quote(v.cipher()) + " 2>/dev/null");
  EXPECT_EQ(9, check.exit_code) << check.output;
  json j = ParseJson(check);
  EXPECT_FALSE(j["policy_authenticated"].get<bool>());
  ASSERT_EQ(1u, j["keys"].size());
  EXPECT_TRUE(j["keys"][0]["overdue"].get<bool>());
  EXPECT_LT(j["keys"][0]["days_to_rotation"].get<int64_t>(), -365);
  CommandResult message = Keyless("keys list --check " + Quote(v.cipher()) + " 2>&1 >/dev/null");
  EXPECT_NE(std::string::npos, message.output.find("rotation overdue")) << message.output;
  EXPECT_NE(std::string::npos, message.output.find("unauthenticated")) << message.output;
  EXPECT_EQ(0, Keyless("keys list " + Quote(v.cipher())).exit_code) << "no --check: a listing";

  CommandResult audit = Keyless("audit --json " + Quote(v.cipher()) + " 2>/dev/null");
  EXPECT_EQ(5, audit.exit_code) << audit.output;
  json a = ParseJson(audit);
  EXPECT_TRUE(a["rotation_overdue"].get<bool>());
  EXPECT_FALSE(a["policy_authenticated"].get<bool>());
  CommandResult audit_text = Keyless("audit " + Quote(v.cipher()));
  EXPECT_NE(std::string::npos, audit_text.output.find("ROTATION OVERDUE")) << audit_text.output;
  EXPECT_NE(std::string::npos, audit_text.output.find("NOT authenticated")) << audit_text.output;
  EXPECT_NE(std::string::npos, audit_text.output.find("result: PROBLEMS")) << audit_text.output;

  // With the key the same edit is what it is: a keyring that does not authenticate.
  EXPECT_EQ(4, RunCommand(v.Ctl("keys list --check " + Quote(v.cipher()))).exit_code);
}

TEST(Monitoring, AKeylessCheckRefusesAKeyringOfTheWrongShapeInOneLine) {
  OfflineVolume v;
  const fs::path file = v.cipher() / "envelopefs.keyring";
  const std::string good = ReadFile(file);
  WriteFile(file, SetTomlValues(good, "state", "'retired'"));
  CommandResult none_active = Keyless("keys list --check " + Quote(v.cipher()));
  EXPECT_EQ(4, none_active.exit_code) << none_active.output;
  EXPECT_EQ(1u, SplitLines(none_active.output).size()) << none_active.output;
  EXPECT_NE(std::string::npos, none_active.output.find("exactly one active")) << none_active.output;
  WriteFile(file, SetTomlValues(good, "volume_id", "'00112233445566778899aabbccddeeff'"));
  CommandResult foreign = Keyless("audit " + Quote(v.cipher()));
  EXPECT_EQ(4, foreign.exit_code) << foreign.output;
  EXPECT_NE(std::string::npos, foreign.output.find("another volume")) << foreign.output;
  fs::remove(file);
  EXPECT_EQ(4, Keyless("keys list --check " + Quote(v.cipher())).exit_code);
}

// --- Prometheus ------------------------------------------------------------------------------

TEST(Monitoring, AuditWritesPrometheusMetricsWithTheRightNumbers) {
  OfflineVolume v;
  for (int i = 0; i < 3; ++i) v.Write("old/f" + std::to_string(i), "one");
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);
  for (int i = 0; i < 2; ++i) v.Write("new/g" + std::to_string(i), "two");
  WriteFile(v.cipher() / "notes.txt", "planted plaintext\n");
  WriteFile(v.cipher() / "EMPTYEMPTYEMPTYEMPTYEMPTYEMPTY12", "");
  const std::string id = VolumeId(v);
  const fs::path dir = v.root() / "textfile";
  fs::create_directory(dir);
  const fs::path prom = dir / "envelopefs.prom";

  for (bool keyed : {false, true}) {
    SCOPED_TRACE(keyed ? "with the key" : "without the key");
    const int64_t before = ::time(nullptr);
    const std::string args = "audit " + Quote(v.cipher()) + " --prometheus " + Quote(prom);
    CommandResult r = keyed ? RunCommand(v.Ctl(args)) : Keyless(args);
    const int64_t after = ::time(nullptr);
    EXPECT_EQ(5, r.exit_code) << r.output;
    Metrics m = ParseMetrics(ReadFile(prom), id);
    auto at = [&](const std::string& key) {
      EXPECT_EQ(1u, m.samples.count(key)) << key;
      return m.samples[key];
    };
    EXPECT_EQ(7, at("envelopefs_files{}"));
    EXPECT_EQ(3, at("envelopefs_files_by_kek_version{,kek_version=\"1\"}"));
    EXPECT_EQ(2, at("envelopefs_files_by_kek_version{,kek_version=\"2\"}"));
    EXPECT_EQ(1, at("envelopefs_unencrypted_files{}"));
    EXPECT_EQ(1, at("envelopefs_damaged_files{}"));
    EXPECT_EQ(0, at("envelopefs_duplicate_file_id_groups{}"));
    EXPECT_EQ(0, at("envelopefs_duplicate_dek_groups{}"));
    EXPECT_EQ(0, at("envelopefs_kek_age_days{,kek_version=\"1\",state=\"decrypt-only\"}"));
    EXPECT_EQ(0, at("envelopefs_kek_age_days{,kek_version=\"2\",state=\"active\"}"));
    const double due = at("envelopefs_rotation_due_days{,kek_version=\"2\"}");
    EXPECT_TRUE(due == 89 || due == 90) << due;
    EXPECT_EQ(0, m.samples.count("envelopefs_rotation_due_days{,kek_version=\"1\"}"));
    EXPECT_EQ(0, at("envelopefs_rotation_overdue{}"));
    EXPECT_EQ(90, at("envelopefs_rotate_after_days{}"));
    EXPECT_EQ(keyed ? 1 : 0, at("envelopefs_policy_authenticated{}"));
    EXPECT_EQ(0, at("envelopefs_audit_ok{}"));
    EXPECT_EQ(0, at("envelopefs_audit_log_problems{}"));
    const double stamp = at("envelopefs_check_timestamp_seconds{}");
    EXPECT_LE(before, stamp);
    EXPECT_GE(after, stamp);
    if (keyed) {
      EXPECT_EQ(0, at("envelopefs_unsealed_files{}"));
    } else {
      EXPECT_EQ(0u, m.samples.count("envelopefs_unsealed_files{}")) << "not checked: absent";
    }
  }
  // Replaced atomically: readable by the collector (another user), no temp file left behind.
  struct stat st;
  ASSERT_EQ(0, ::stat(prom.c_str(), &st));
  EXPECT_EQ(0644u, st.st_mode & 07777);
  EXPECT_EQ(std::vector<fs::path>{prom}, FilesBelow(dir));
}

TEST(Monitoring, KeysListWritesKeyMetricsAndAnOverdueKeyShowsInThem) {
  OfflineVolume v;
  const std::string id = VolumeId(v);
  const fs::path prom = v.root() / "keys.prom";
  SetKeyringCreated(v, "2020-01-01T00:00:00Z");
  CommandResult r =
      Keyless("keys list --check " + Quote(v.cipher()) + " --prometheus " + Quote(prom));
  EXPECT_EQ(9, r.exit_code) << r.output;
  Metrics m = ParseMetrics(ReadFile(prom), id);
  EXPECT_EQ(1, m.samples["envelopefs_rotation_overdue{}"]);
  EXPECT_EQ(0, m.samples["envelopefs_policy_authenticated{}"]);
  EXPECT_LT(m.samples["envelopefs_rotation_due_days{,kek_version=\"1\"}"], -365);
  EXPECT_GT(m.samples["envelopefs_kek_age_days{,kek_version=\"1\",state=\"active\"}"], 365);
  EXPECT_EQ(0u, m.samples.count("envelopefs_files{}")) << "keys list walks no files";

  // A textfile that cannot be written: refused before any work, in one line, nothing written.
  const fs::path missing = v.root() / "no-such-dir" / "keys.prom";
  for (const char* cmd : {"keys list", "audit"}) {
    CommandResult bad = Keyless(std::string(cmd) + " " + Quote(v.cipher()) + " --prometheus " +
                                Quote(missing) + " 2>&1");
    EXPECT_EQ(6, bad.exit_code) << bad.output;
    EXPECT_EQ(1u, SplitLines(bad.output).size()) << bad.output;
    EXPECT_NE(std::string::npos, bad.output.find("--prometheus")) << bad.output;
  }
  EXPECT_FALSE(fs::exists(missing.parent_path()));
  CommandResult misplaced =
      RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()) + " --prometheus " + Quote(prom)));
  EXPECT_EQ(2, misplaced.exit_code) << misplaced.output;
}

// --- audit report and log --------------------------------------------------------------------

TEST(Monitoring, AuditJsonCarriesTimestampVolumeIdAndToolVersion) {
  OfflineVolume v;
  CommandResult r = RunCommand(v.Ctl("audit --json " + Quote(v.cipher())) + " 2>/dev/null");
  ASSERT_EQ(0, r.exit_code) << r.output;
  json j = ParseJson(r);
  // ISO 8601 UTC, to the second: "2026-11-24T15:42:13Z", and now.
  const std::string stamp = j["timestamp"];
  ASSERT_EQ(20u, stamp.size()) << stamp;
  EXPECT_EQ("--T::Z",
            stamp.substr(4, 1) + stamp[7] + stamp[10] + stamp[13] + stamp[16] + stamp[19]);
  struct tm tm {};
  ASSERT_NE(nullptr, strptime(stamp.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) << stamp;
  EXPECT_NEAR(static_cast<double>(::time(nullptr)), static_cast<double>(timegm(&tm)), 60) << stamp;
  EXPECT_EQ(VolumeId(v), j["volume_id"]);
  EXPECT_EQ(ENVELOPEFS_VERSION, j["tool_version"]);
  EXPECT_TRUE(j["policy_authenticated"].get<bool>());
}

TEST(Monitoring, ReadOnlyCommandsLogNoUnlocksAndKeyEventsShareFieldNames) {
  OfflineVolume v;
  v.Write("f", "data");
  // Created: the first line of the log.
  std::vector<json> events = AuditEvents(v);
  ASSERT_EQ(1u, events.size());
  EXPECT_EQ("volume_created", events[0]["event"]);
  EXPECT_EQ(1, events[0]["kek_version"]);
  EXPECT_EQ(4096, events[0]["chunk_size"]);
  EXPECT_EQ(VolumeId(v), events[0]["volume_id"]);
  EXPECT_EQ("init", events[0]["command"]);
  for (const char* field : {"time", "program", "pid", "uid", "user", "host", "mac"}) {
    EXPECT_TRUE(events[0].contains(field)) << field;
  }

  const std::string dir = Quote(v.cipher());
  for (const std::string& cmd :
       {"keys list " + dir, "keys list --check --json " + dir, "keys policy " + dir, "audit " + dir,
        "verify " + dir, "ls " + dir, "inspect " + Quote(v.CipherPath("f"))}) {
    CommandResult r = RunCommand(v.Ctl(cmd));
    EXPECT_EQ(0, r.exit_code) << cmd << ": " << r.output;
  }
  events = AuditEvents(v);
  EXPECT_EQ(1u, events.size()) << "read-only commands logged: " << events.back().dump();

  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + dir)).exit_code);
  ASSERT_EQ(0, RunCommand(v.Ctl("rewrap " + dir)).exit_code);
  ASSERT_EQ(0, RunCommand(v.Ctl("keys retire --version 1 " + dir)).exit_code);
  events = AuditEvents(v);
  std::map<std::string, json> by_event;
  for (const json& e : events) by_event[e["event"]] = e;
  EXPECT_EQ(2, by_event["kek_rotated"]["kek_version"]);
  EXPECT_EQ("keys rotate", by_event["kek_rotated"]["command"]);
  EXPECT_EQ("rewrap", by_event["rewrap_finished"]["command"]);
  EXPECT_EQ(1, by_event["kek_rotated"]["previous_kek_version"]);
  EXPECT_EQ(2, by_event["rewrap_finished"]["kek_version"]);
  EXPECT_EQ(1, by_event["version_retired"]["kek_version"]);
  EXPECT_TRUE(by_event.count("volume_unlocked")) << "commands that change keys log the unlock";
  for (const json& e : events) {
    EXPECT_FALSE(e.contains("version")) << "a KEK version is kek_version: " << e.dump();
    EXPECT_FALSE(e.contains("previous_version")) << e.dump();
  }
}

}  // namespace
}  // namespace envelopefs::testing
