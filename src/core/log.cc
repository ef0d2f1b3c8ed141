#include "envelopefs/log.h"

#include <cstdio>
#include <mutex>

#include "envelopefs/encoding.h"

namespace envelopefs {
namespace {

LogSink& Sink() {
  static LogSink sink = [](LogLevel level, const std::string& message) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    const char* tag = level == LogLevel::kError     ? "error: "
                      : level == LogLevel::kWarning ? "warning: "
                                                    : "";
    std::fprintf(stderr, "envelopefs: %s%s\n", tag, message.c_str());
  };
  return sink;
}

TamperHook& Hook() {
  static TamperHook hook;
  return hook;
}

}  // namespace

void SetLogSink(LogSink sink) { Sink() = std::move(sink); }

void SetTamperHook(TamperHook hook) { Hook() = std::move(hook); }

void ReportTamper(const std::string& file, const std::string& detail) noexcept {
  // Names are bytes: escaped once, here, so that no name can break a log line or the audit
  // log's JSON, or forge a line. Never throws: the caller has already decided its reply (EIO).
  try {
    const std::string safe_file = EscapeName(file);
    const std::string safe_detail = EscapeName(detail);
    Log(LogLevel::kError, "tamper: " + safe_file + ": " + safe_detail);
    if (Hook()) Hook()(safe_file, safe_detail);
  } catch (...) {
    std::fputs("envelopefs: error: a tamper report failed\n", stderr);
  }
}

void Log(LogLevel level, const std::string& message) { Sink()(level, message); }

}  // namespace envelopefs
