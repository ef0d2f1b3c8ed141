// Logging for the core library: one line per event, sent to a process-wide sink.
//
// The daemon points the sink at syslog (or stderr in the foreground); tools leave it on stderr.
// Never log key material or plaintext names' content beyond what the message is about. Damage
// and tampering are not logged here but reported to the caller (damage_reporter.h).
// Thread-safe.
#pragma once

#include <functional>
#include <string>

namespace envelopefs {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogSink = std::function<void(LogLevel, const std::string&)>;

void SetLogSink(LogSink sink);  // call before starting threads
void Log(LogLevel level, const std::string& message);

}  // namespace envelopefs
