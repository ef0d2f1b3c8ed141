// DamageAudit — see damage_audit.h.
#include "damage_audit.h"

#include "envelopefs/audit_log.h"

namespace envelopefs {

void DamageAudit::Damaged(const Damage& damage) {
  LoggingDamageReporter::Damaged(damage);  // every time: each EIO has its log line
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (seen_.size() > kRemembered) seen_.clear();
    if (!seen_.insert(damage.file + '\n' + damage.detail).second) return;
  }
  AppendTamperEvent(volume_, damage.file, damage.detail);
}

}  // namespace envelopefs
