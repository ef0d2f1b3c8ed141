// Prometheus metrics for node_exporter's textfile collector (`--prometheus FILE` on keys list
// --check and audit): the text exposition format, one HELP and TYPE line per metric, every
// sample labelled with the volume id, written atomically (a temp file in the target's directory,
// fsync, rename) so the collector never reads half a file. The metric names are documented in
// envelopectl(1), METRICS. Not thread-safe (one writer per command).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs::cli {

class PrometheusText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // `volume_id` (hex) labels every sample.
  explicit PrometheusText(std::string volume_id) : volume_id_(std::move(volume_id)) {}

  // Adds a sample of gauge `name` (with the envelopefs_ prefix); the first sample of a name
  // sets its HELP text.
  void Gauge(const std::string& name, const std::string& help, double value,
             const Labels& labels = {});

  // The exposition text: metrics in the order first added, each with its HELP and TYPE lines.
  std::string Text() const;

 private:
  struct Metric {
    std::string help;
    std::vector<std::string> samples;  // "name{labels} value"
  };
  std::string volume_id_;
  std::vector<std::string> order_;
  std::map<std::string, Metric> metrics_;
};

// The key metrics (age per version, days to rotation, overdue, policy, whether it was
// authenticated) and the time of the check.
void AddKeyMetrics(PrometheusText& out, const KeyPolicyReport& report);

// The textfile to write, its directory opened up front so that a bad path fails before a long
// walk (Error(kUsage) without a file name, Error(kIo) if the directory cannot be opened).
class PrometheusFile {
 public:
  explicit PrometheusFile(const std::filesystem::path& file);
  // Replaces the file with `text` atomically, mode 0644 (node_exporter runs as another user).
  // Throws Error(kIo) naming the file; the old file is then untouched.
  void Write(const std::string& text) const;

 private:
  std::filesystem::path file_;
  UniqueFd dir_;
};

// A PrometheusFile for --prometheus, if given.
std::optional<PrometheusFile> PrometheusFileFor(const Args& args);

}  // namespace envelopefs::cli
