// DamageAudit — the daemon's DamageReporter: every report is logged ("tamper: FILE: DETAIL",
// naming the cipher file and, for a chunk, the chunk) and recorded as a tamper_detected event in
// the volume's audit log (AppendTamperEvent), the latter once per file and detail, so that a
// damaged file read again and again does not flood the audit log.
//
// Thread-safe: called from every FUSE worker and the sealer. `volume` must outlive it (EnvelopeFs
// owns both and destroys the reporter just before the volume).
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "envelopefs/damage_reporter.h"
#include "envelopefs/volume.h"

namespace envelopefs {

class DamageAudit : public LoggingDamageReporter {
 public:
  explicit DamageAudit(const Volume& volume) : volume_(volume) {}
  void Damaged(const Damage& damage) override;

 private:
  static constexpr size_t kRemembered = 4096;  // forgotten all at once beyond this
  const Volume& volume_;
  std::mutex mutex_;
  std::set<std::string> seen_;  // file + '\n' + detail
};

}  // namespace envelopefs
