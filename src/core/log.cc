#include "envelopefs/log.h"

#include <cstdio>
#include <mutex>

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

}  // namespace

void SetLogSink(LogSink sink) { Sink() = std::move(sink); }

void Log(LogLevel level, const std::string& message) { Sink()(level, message); }

}  // namespace envelopefs
