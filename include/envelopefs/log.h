// Logging for the core library: one line per event, sent to a process-wide sink.
//
// The daemon points the sink at syslog (or stderr in the foreground); tools leave it on stderr.
// Never log key material or plaintext names' content beyond what the message is about.
// Thread-safe.
#pragma once

#include <functional>
#include <string>

namespace envelopefs {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogSink = std::function<void(LogLevel, const std::string&)>;

void SetLogSink(LogSink sink);  // call before starting threads
void Log(LogLevel level, const std::string& message);

// Tampering or damage found in `file` (a cipher path): logs "tamper: FILE: DETAIL" as an error
// and calls the tamper hook (the daemon appends it to the audit log), both with `file` and
// `detail` escaped (EscapeName). Thread-safe.
using TamperHook = std::function<void(const std::string& file, const std::string& detail)>;
void SetTamperHook(TamperHook hook);  // call before starting threads
void ReportTamper(const std::string& file, const std::string& detail) noexcept;

}  // namespace envelopefs
