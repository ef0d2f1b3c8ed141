// Prometheus textfile metrics — see prometheus.h.
#include "prometheus.h"

#include <fcntl.h>

#include <cmath>
#include <cstdio>

// AtomicFile is the core library's own crash-safe replacement (temp file, fsync, rename).
#include "../src/core/atomic_file.h"
#include "envelopefs/error.h"

namespace envelopefs::cli {

namespace {

constexpr char kPrefix[] = "envelopefs_";

// Label values are ours (hex, numbers, fixed words) but are escaped as the format requires.
std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(value));
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", value);
  }
  return buf;
}

}  // namespace

void PrometheusText::Gauge(const std::string& name, const std::string& help, double value,
                           const Labels& labels) {
  const std::string full = kPrefix + name;
  auto [it, fresh] = metrics_.try_emplace(full);
  if (fresh) {
    it->second.help = help;
    order_.push_back(full);
  }
  std::string sample = full + "{volume_id=\"" + EscapeLabel(volume_id_) + "\"";
  for (const auto& [key, val] : labels) sample += "," + key + "=\"" + EscapeLabel(val) + "\"";
  sample += "} " + FormatValue(value);
  it->second.samples.push_back(sample);
}

std::string PrometheusText::Text() const {
  std::string out;
  for (const std::string& name : order_) {
    const Metric& m = metrics_.at(name);
    out += "# HELP " + name + " " + m.help + "\n";
    out += "# TYPE " + name + " gauge\n";
    for (const std::string& s : m.samples) out += s + "\n";
  }
  return out;
}

void AddKeyMetrics(PrometheusText& out, const KeyPolicyReport& report) {
  for (const KekPolicyStatus& s : report.statuses) {
    out.Gauge(
        "kek_age_days", "Whole days since the KEK version was created.",
        static_cast<double>(s.age_days),
        {{"kek_version", std::to_string(s.info.version)}, {"state", KekStateName(s.info.state)}});
  }
  for (const KekPolicyStatus& s : report.statuses) {
    if (!s.days_to_rotation) continue;
    out.Gauge("rotation_due_days",
              "Whole days until the active KEK version is due for rotation (negative: overdue).",
              static_cast<double>(*s.days_to_rotation),
              {{"kek_version", std::to_string(s.info.version)}});
  }
  out.Gauge("rotation_overdue", "1 if the active KEK version is older than the policy allows.",
            RotationOverdue(report.statuses) ? 1 : 0);
  out.Gauge("rotate_after_days", "The rotation policy: days a KEK version may stay active.",
            report.rotate_after_days);
  out.Gauge("policy_authenticated",
            "1 if the keyring (versions, dates, policy) was authenticated with the master key; 0 "
            "if read without a key, as stored.",
            report.authenticated ? 1 : 0);
  out.Gauge("check_timestamp_seconds", "Unix time of the check that wrote these metrics.",
            static_cast<double>(report.now));
}

PrometheusFile::PrometheusFile(const std::filesystem::path& file) : file_(file) {
  if (!file.has_filename()) {
    throw Error(ErrorKind::kUsage, "--prometheus needs a file name, not " + file.string());
  }
  const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
  dir_ = UniqueFd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_.valid()) ThrowSystemError("--prometheus: open " + dir.string());
}

void PrometheusFile::Write(const std::string& text) const {
  ReplaceFileIn(dir_.get(), file_.filename().string(), text, 0644, file_.string());
}

std::optional<PrometheusFile> PrometheusFileFor(const Args& args) {
  if (!args.prometheus) return std::nullopt;
  return std::optional<PrometheusFile>(std::in_place, *args.prometheus);
}

}  // namespace envelopefs::cli
