#include "envelopefs/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/log.h"

namespace envelopefs {
namespace {

std::string& Program() {
  static std::string program = "envelopefs";
  return program;
}

std::string NowUtc() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

}  // namespace

void SetAuditProgram(const std::string& name) { Program() = name; }

void AppendAuditEvent(const std::filesystem::path& cipher_dir, const VolumeConfig& config,
                      const std::string& event, nlohmann::json fields) {
  if (config.audit_log.empty()) return;
  std::filesystem::path path = config.audit_log;
  if (path.is_relative()) path = cipher_dir / path;
  nlohmann::json line = {{"time", NowUtc()},
                         {"event", event},
                         {"volume_id", ToHex(config.volume_id)},
                         {"program", Program()},
                         {"pid", static_cast<int>(getpid())}};
  if (fields.is_object()) line.update(fields);
  std::string text = line.dump() + "\n";
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    Log(LogLevel::kWarning,
        "cannot append to the audit log " + path.string() + ": " + std::strerror(errno));
  }
  if (fd >= 0) close(fd);
}

std::unique_ptr<Volume> OpenVolumeAudited(const std::filesystem::path& cipher_dir,
                                          const MasterKeySource& source, nlohmann::json fields) {
  try {
    auto volume = Volume::Open(cipher_dir, source);
    AppendAuditEvent(cipher_dir, volume->config(), "volume_unlocked", std::move(fields));
    return volume;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kWrongKey) {
      try {
        AppendAuditEvent(cipher_dir, VolumeConfig::Load(cipher_dir), "unlock_failed",
                         {{"reason", "wrong key"}});
      } catch (const Error&) {
        // No readable config: nowhere to log to.
      }
    }
    throw;
  }
}

}  // namespace envelopefs
