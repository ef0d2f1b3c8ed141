// Key rotation policy — see key_policy.h.
#include "envelopefs/key_policy.h"

#include <ctime>

namespace envelopefs {

namespace {

int64_t FloorDays(int64_t seconds) {
  int64_t days = seconds / kSecondsPerDay;
  return seconds % kSecondsPerDay < 0 ? days - 1 : days;
}

}  // namespace

std::vector<KekPolicyStatus> EvaluateKeyPolicy(const std::vector<KekInfo>& keks,
                                               uint32_t rotate_after_days, int64_t now_unix) {
  std::vector<KekPolicyStatus> out;
  out.reserve(keks.size());
  for (const KekInfo& k : keks) {
    KekPolicyStatus s;
    s.info = k;
    s.age_days = now_unix > k.created_unix ? (now_unix - k.created_unix) / kSecondsPerDay : 0;
    if (k.state == KekState::kActive) {
      s.rotation_due = k.created_unix + int64_t{rotate_after_days} * kSecondsPerDay;
      s.overdue = now_unix > *s.rotation_due;
      s.days_to_rotation = FloorDays(*s.rotation_due - now_unix);
    }
    out.push_back(s);
  }
  return out;
}

bool RotationOverdue(const std::vector<KekPolicyStatus>& statuses) {
  for (const KekPolicyStatus& s : statuses) {
    if (s.overdue) return true;
  }
  return false;
}

std::string FormatUtc(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace envelopefs
