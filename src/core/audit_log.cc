// AuditLog — see audit_log.h; the line format is in envelopefs-format(5), AUDIT LOG.
#include "envelopefs/audit_log.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>

#include "atomic_file.h"
#include "envelopefs/beneath.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/host_state.h"
#include "envelopefs/keyring.h"
#include "envelopefs/log.h"
#include "envelopefs/unique_fd.h"
#include "header_lock.h"

namespace envelopefs {
namespace {

constexpr size_t kTailWindow = 64 * 1024;        // a line is far shorter
constexpr size_t kMaxLogSize = size_t{1} << 30;  // Verify reads at most this much
constexpr char kMacPrefix[] = ",\"mac\":\"";
constexpr size_t kMacHexSize = 2 * kSha256Size;

std::string& Program() {
  static std::string program = "envelopefs";
  return program;
}

std::string& Command() {
  static std::string command;
  return command;
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

std::string UserName(uid_t uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return pw.pw_name;
  return std::to_string(uid);
}

std::string HostName() {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  return host;
}

std::string Dump(const nlohmann::json& j) {
  // Never throws on bytes that are not UTF-8 (a cipher path in plaintext-names mode).
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string HexDigest(std::span<const uint8_t> bytes) { return ToHex(Sha256(bytes)); }

// A string field of a line read from the log, or `fallback` when it is absent or of another
// type. (nlohmann's value() throws on a type mismatch, and the log is hostile input.)
std::string StringField(const nlohmann::json& line, const char* name, const char* fallback) {
  auto it = line.find(name);
  return it != line.end() && it->is_string() ? it->get<std::string>() : std::string(fallback);
}

// Opens the log for appending: never through a symlink, and never a FIFO, device or hard link
// (nothing but a regular file with one link is even opened).
UniqueFd OpenLog(int root_fd, std::string* why) {
  int fd = OpenRegularFileAt(root_fd, kAuditLogFileName, O_RDWR | O_APPEND, /*create=*/true, 0600,
                             /*single_link=*/true);
  if (fd < 0) {
    *why = fd == -EINVAL || fd == -EMLINK
               ? "not a plain regular file (a link or special file was planted)"
               : std::strerror(-fd);
    return UniqueFd();
  }
  return UniqueFd(fd);
}

// The last line of the log (with its newline) and the sequence number it carries (0: none).
struct Tail {
  std::string last_line;  // empty for an empty log
  uint64_t sequence = 0;
  bool torn = false;  // the log does not end with a newline
};

Tail ReadTail(int fd) {
  Tail tail;
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0) return tail;
  const size_t size = static_cast<size_t>(st.st_size);
  const size_t window = std::min(size, kTailWindow);
  std::string data(window, '\0');
  ssize_t n = ::pread(fd, data.data(), window, static_cast<off_t>(size - window));
  if (n <= 0) return tail;
  data.resize(static_cast<size_t>(n));
  tail.torn = data.back() != '\n';
  if (tail.torn) data.push_back('\n');  // the writer seals a torn line with a newline
  size_t start = data.rfind('\n', data.size() - 2);
  tail.last_line = data.substr(start == std::string::npos ? 0 : start + 1);
  try {
    auto line = nlohmann::json::parse(tail.last_line);
    if (line.is_object() && line.contains("seq") && line["seq"].is_number_unsigned()) {
      tail.sequence = line["seq"].get<uint64_t>();
    }
  } catch (const nlohmann::json::exception&) {
    // Not a line we wrote: the chain continues from its hash; Verify reports it.
  }
  return tail;
}

// The text of a line: `fields` as JSON, plus the MAC over that text when a key is given.
std::string SealLine(const nlohmann::json& fields, const SecureBytes* key) {
  std::string text = Dump(fields);
  if (key != nullptr) {
    Sha256Digest mac = HmacSha256(key->span(), AsBytes(text));
    text.pop_back();  // '}'
    text += kMacPrefix + ToHex(mac) + "\"}";
  }
  return text + "\n";
}

void ToSyslog(const std::string& line) {
  static std::once_flag once;
  std::call_once(once, [] { openlog("envelopefs", LOG_PID, LOG_DAEMON); });
  syslog(LOG_AUTHPRIV | LOG_NOTICE, "audit %s", line.c_str());
}

// Appends one chained line; `key` null: no MAC. Never throws.
void Append(int root_fd, const VolumeConfig& config, bool enabled, const SecureBytes* key,
            const std::string& event, nlohmann::json fields) {
  try {
    const uid_t uid = ::getuid();
    nlohmann::json line = {{"time", NowUtc()},
                           {"event", event},
                           {"volume_id", ToHex(config.volume_id)},
                           {"program", Program()},
                           {"pid", static_cast<int>(::getpid())},
                           {"uid", static_cast<uint64_t>(uid)},
                           {"user", UserName(uid)},
                           {"host", HostName()}};
    if (!Command().empty()) line["command"] = Command();
    if (fields.is_object()) line.update(fields);
    if (!enabled) {
      ToSyslog(Dump(line));
      return;
    }
    std::string why;
    UniqueFd fd = OpenLog(root_fd, &why);
    if (!fd.valid()) {
      ToSyslog(Dump(line));
      Log(LogLevel::kWarning,
          std::string("cannot append to the audit log ") + kAuditLogFileName + ": " + why);
      return;
    }
    // Bounded: whoever can open the log can flock it, and tamper events are appended from the
    // daemon's read path.
    HeaderLock lock(fd.get());
    if (lock.busy()) {
      ToSyslog(Dump(line));
      Log(LogLevel::kWarning, std::string("cannot append to the audit log ") + kAuditLogFileName +
                                  ": another process holds its lock");
      return;
    }
    Tail tail = ReadTail(fd.get());
    // Numbered after this host's own last line too: a log moved aside, emptied or ended with
    // garbage must not restart the numbers, or putting the old log back later would match
    // this host's record again. The gap it leaves shows as lines missing.
    HostState host(config.volume_id);
    uint64_t marked = 0;
    try {
      marked = host.audit_mark().sequence;
    } catch (const std::exception& e) {
      Log(LogLevel::kWarning, std::string("audit log: this host's record: ") + e.what());
    }
    const uint64_t after = std::max(tail.sequence, marked);
    const uint64_t sequence = after < UINT64_MAX ? after + 1 : UINT64_MAX;
    line["seq"] = sequence;
    line["prev"] = HexDigest(AsBytes(tail.last_line));
    std::string text = SealLine(line, key);
    if (tail.torn) text.insert(text.begin(), '\n');
    ssize_t n = ::write(fd.get(), text.data(), text.size());
    // Durable before this host records it as its last line: a mark for a line lost in a
    // crash (or never written) would later read as lines removed from the log.
    const bool written = n == static_cast<ssize_t>(text.size()) && ::fdatasync(fd.get()) == 0;
    if (!written) {
      Log(LogLevel::kWarning,
          std::string("cannot append to the audit log: ") +
              (n >= 0 && n < static_cast<ssize_t>(text.size()) ? "short write"
                                                               : std::strerror(errno)));
    }
    if (written) {
      // This host remembers its last line, so that removing or replacing it is found.
      const std::string line_text = tail.torn ? text.substr(1) : text;
      host.RecordAuditLine(sequence, HexDigest(AsBytes(line_text)));
    }
    text.pop_back();
    ToSyslog(text);
  } catch (const std::exception& e) {
    Log(LogLevel::kWarning, std::string("audit log: ") + e.what());
  }
}

}  // namespace

void SetAuditProgram(const std::string& name) { Program() = name; }

void SetAuditCommand(const std::string& command) { Command() = command; }

void AppendAuditEvent(const Volume& volume, const std::string& event, nlohmann::json fields) {
  Append(volume.root_fd(), volume.config(), volume.policy().audit_log, &volume.audit_key(), event,
         std::move(fields));
}

void AppendTamperEvent(const Volume& volume, const std::string& file, const std::string& detail,
                       const std::string& found_by) {
  try {
    // Names are bytes: escaped, so the line stays valid UTF-8 JSON and one line.
    nlohmann::json fields = {{"file", EscapeName(file)}, {"detail", EscapeName(detail)}};
    if (!found_by.empty()) fields["found_by"] = found_by;
    AppendAuditEvent(volume, "tamper_detected", std::move(fields));
  } catch (const std::exception& e) {
    Log(LogLevel::kWarning, std::string("audit log: ") + e.what());
  }
}

std::unique_ptr<Volume> OpenVolumeAudited(const std::filesystem::path& cipher_dir,
                                          const MasterKeySource& source, nlohmann::json fields,
                                          bool log_unlock) {
  try {
    auto volume = Volume::Open(cipher_dir, source);
    for (const auto& [name, value] : source.AuditFields()) fields[name] = value;
    if (log_unlock) AppendAuditEvent(*volume, "volume_unlocked", std::move(fields));
    return volume;
  } catch (const Error& e) {
    // A command or a PKCS#11 token can also fail on its own (it hangs, exits non-zero, the
    // token or its key is missing): recorded with its one-line message (nothing secret in it).
    const bool external = source.kind() == MasterKeyKind::kCommand ||
                          source.kind() == MasterKeyKind::kPkcs11 ||
                          source.kind() == MasterKeyKind::kKmip;
    if (e.kind() == ErrorKind::kWrongKey ||
        (external && (e.kind() == ErrorKind::kIo || e.kind() == ErrorKind::kUsage))) {
      const std::string reason = external ? e.what() : "wrong key";
      try {
        UniqueFd root(::open(cipher_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (root.valid()) {
          VolumeConfig config = VolumeConfig::LoadAt(root.get(), cipher_dir);
          // Whether to keep a log is only claimed here (no key to check it); syslog always.
          bool enabled = KeyringFile::Read(root.get(), cipher_dir).claimed_policy(config).audit_log;
          nlohmann::json failed = {{"reason", reason}};
          for (const auto& [name, value] : source.AuditFields()) failed[name] = value;
          Append(root.get(), config, enabled, nullptr, "unlock_failed", std::move(failed));
        }
      } catch (const Error&) {
        // No readable config or keyring: nowhere to log to.
      }
    }
    throw;
  }
}

AuditLogReport VerifyAuditLog(int root_fd, const VolumeConfig& config,
                              const SecureBytes* audit_key) {
  AuditLogReport report;
  report.key_used = audit_key != nullptr;
  const HostState::AuditMark mark = HostState(config.volume_id).audit_mark();
  std::optional<std::string> text;
  try {
    text = ReadSmallFileIn(root_fd, kAuditLogFileName, kMaxLogSize, kAuditLogFileName);
  } catch (const Error&) {
    report.present = true;
    report.problems.push_back(std::string(kAuditLogFileName) + " is too large to check (over " +
                              std::to_string(kMaxLogSize >> 20) + " MiB)");
    return report;
  }
  if (!text) {
    if (errno == ELOOP || errno == EINVAL) {
      report.present = true;
      report.problems.push_back(std::string(kAuditLogFileName) + " is not a regular file");
    } else if (mark.sequence > 0) {
      report.problems.push_back(std::string(kAuditLogFileName) +
                                " is missing, but this host has written " +
                                std::to_string(mark.sequence) + " lines to it");
    }
    return report;
  }
  bool mark_found = false;
  report.present = true;
  auto problem = [&](uint64_t line_no, const std::string& what) {
    report.problems.push_back("line " + std::to_string(line_no) + ": " + what);
  };
  // The digest of the previous raw line, with its newline (of nothing before the first).
  std::string previous = HexDigest({});
  uint64_t previous_sequence = 0;
  bool chained = false;   // a chained line has been seen
  uint64_t unproven = 0;  // chained lines after the last authenticated one
  size_t pos = 0;
  uint64_t line_no = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    const bool torn = end == std::string::npos;
    const size_t length = (torn ? text->size() : end + 1) - pos;
    ++line_no;
    ++report.lines;
    if (length > kTailWindow) {
      // Not a line envelopefs writes; and parsing it could take many times its size in memory
      // (deeply nested JSON), so it is not parsed. Its successor is still checked against it.
      problem(line_no, "longer than any audit line (" + std::to_string(length) +
                           " bytes: edited or damaged)");
      previous = HexDigest(AsBytes(std::string_view(*text).substr(pos, length)));
      pos += length;
      continue;
    }
    std::string raw = text->substr(pos, length);
    pos += length;
    std::string body = raw;
    if (!body.empty() && body.back() == '\n') body.pop_back();
    nlohmann::json line;
    try {
      line = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception&) {
      problem(line_no, torn ? "cut short (the log was truncated or a write was torn)"
                            : "not a valid audit line (edited or damaged)");
      previous = HexDigest(AsBytes(raw));
      continue;
    }
    if (!line.is_object() || !line.contains("seq")) {
      if (chained) {
        problem(line_no, "a line without a sequence number inside the chained log (inserted)");
      } else {
        ++report.legacy;  // written by envelopefs 0.1, before the log was chained
      }
      previous = HexDigest(AsBytes(raw));
      continue;
    }
    const bool first_chained = !chained;
    chained = true;
    // The writer numbers from 1; 0, a negative number or a string is no sequence number, and
    // must not pass for "no line before" (it would hide lines cut from the front).
    const uint64_t sequence = line["seq"].is_number_unsigned() ? line["seq"].get<uint64_t>() : 0;
    const std::string prev = StringField(line, "prev", "");
    if (prev != previous) {
      problem(line_no,
              "does not follow the line before it (lines removed, reordered or edited "
              "before it)");
    }
    if (sequence == 0) {
      problem(line_no, "no valid sequence number (edited or forged)");
    } else if (first_chained) {
      if (sequence > 1) {
        problem(line_no, std::to_string(sequence - 1) +
                             " lines missing before it (the log starts at sequence " +
                             std::to_string(sequence) + ")");
      }
    } else if (sequence != previous_sequence + 1) {
      problem(line_no, sequence > previous_sequence
                           ? std::to_string(sequence - previous_sequence - 1) +
                                 " lines missing before it (sequence " +
                                 std::to_string(previous_sequence) + " -> " +
                                 std::to_string(sequence) + ")"
                           : "out of order (sequence " + std::to_string(sequence) + " after " +
                                 std::to_string(previous_sequence) + ")");
    }
    previous_sequence = sequence;
    report.last_sequence = sequence;
    if (mark.sequence != 0 && sequence == mark.sequence && !mark_found) {
      mark_found = true;
      if (HexDigest(AsBytes(raw)) != mark.sha256) {
        problem(line_no, "is not the line this host wrote as sequence " + std::to_string(sequence) +
                             " (the log's end was replaced)");
      }
    }
    // The MAC, when there is one, is the last field: everything before it is what it covers.
    const size_t mac_at = body.rfind(kMacPrefix);
    const bool has_mac = line.contains("mac");
    if (!has_mac) {
      ++report.unauthenticated;
      ++unproven;
      if (StringField(line, "event", "") != "unlock_failed") {
        problem(line_no, "a \"" + StringField(line, "event", "?") +
                             "\" line without a MAC (only failed unlocks are written without "
                             "the key): forged");
      }
    } else if (audit_key != nullptr) {
      const bool shaped = mac_at != std::string::npos &&
                          body.size() == mac_at + std::strlen(kMacPrefix) + kMacHexSize + 2;
      std::string covered = shaped ? body.substr(0, mac_at) + "}" : std::string();
      auto mac = shaped ? FromHex(body.substr(mac_at + std::strlen(kMacPrefix), kMacHexSize))
                        : std::nullopt;
      if (!mac || !ConstantTimeEqual(*mac, HmacSha256(audit_key->span(), AsBytes(covered)))) {
        problem(line_no, "does not authenticate (edited, or written with another key)");
      } else {
        ++report.authenticated;
        unproven = 0;
      }
    }
    previous = HexDigest(AsBytes(raw));
  }
  // Not a problem by itself (a failed unlock may be the last event), but nothing vouches for
  // these lines yet.
  report.trailing_unproven = audit_key != nullptr ? unproven : 0;
  if (mark.sequence > report.last_sequence) {
    report.problems.push_back("the log ends at sequence " + std::to_string(report.last_sequence) +
                              " but this host has written up to " + std::to_string(mark.sequence) +
                              ": lines were removed from its end");
  } else if (mark.sequence != 0 && !mark_found) {
    report.problems.push_back("the line this host wrote as sequence " +
                              std::to_string(mark.sequence) + " is gone");
  }
  return report;
}

}  // namespace envelopefs
