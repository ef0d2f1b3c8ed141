// DamageReporter — see damage_reporter.h.
#include "envelopefs/damage_reporter.h"

#include <cstdio>

#include "envelopefs/encoding.h"
#include "envelopefs/log.h"

namespace envelopefs {

void DamageReporter::Unsealed(const std::string& file) {
  Log(LogLevel::kWarning, "unsealed: " + EscapeName(file) +
                              ": its last write was interrupted (or an older state was put "
                              "back): length and chunk versions are not proven");
}

void DamageReporter::CopyDamaged(const Damage& damage) {
  Log(LogLevel::kWarning, "header: " + EscapeName(damage.file) + ": " + EscapeName(damage.detail) +
                              " (the file reads; writing it again rewrites both copies)");
}

void LoggingDamageReporter::Damaged(const Damage& damage) {
  // Names are bytes: escaped, so that no name can break a log line or forge one.
  Log(LogLevel::kError, "tamper: " + EscapeName(damage.file) + ": " + EscapeName(damage.detail));
}

void ReportDamage(DamageReporter& reporter, const Damage& damage) noexcept {
  try {
    reporter.Damaged(damage);
  } catch (...) {
    std::fputs("envelopefs: error: a damage report failed\n", stderr);
  }
}

void ReportUnsealed(DamageReporter& reporter, const std::string& file) noexcept {
  try {
    reporter.Unsealed(file);
  } catch (...) {
    std::fputs("envelopefs: error: a damage report failed\n", stderr);
  }
}

void ReportCopyDamaged(DamageReporter& reporter, const Damage& damage) noexcept {
  try {
    reporter.CopyDamaged(damage);
  } catch (...) {
    std::fputs("envelopefs: error: a damage report failed\n", stderr);
  }
}

}  // namespace envelopefs
