// Key rotation policy: the age of each KEK version and when the active one is due for rotation.
//
// Pure functions over KekInfo and a point in time (no I/O, no clock), so the due-date and
// overdue rules are unit-tested without faking time; envelopectl `keys list` and `audit` print
// their results. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "envelopefs/keyring.h"

namespace envelopefs {

inline constexpr int64_t kSecondsPerDay = 86400;

struct KekPolicyStatus {
  KekInfo info;
  int64_t age_days = 0;                 // whole days since creation (0 if in the future)
  std::optional<int64_t> rotation_due;  // Unix time; only for the active version
  bool overdue = false;                 // active and older than rotate_after_days
  // Whole days until rotation_due, rounded down (negative once overdue); only for the active
  // version.
  std::optional<int64_t> days_to_rotation;
};

// One status per version, in the order given. The active version is due `rotate_after_days`
// after its creation and overdue once `now_unix` is past that instant.
std::vector<KekPolicyStatus> EvaluateKeyPolicy(const std::vector<KekInfo>& keks,
                                               uint32_t rotate_after_days, int64_t now_unix);

// True if any status is overdue (i.e. the active version is older than the policy allows).
bool RotationOverdue(const std::vector<KekPolicyStatus>& statuses);

// ISO 8601 UTC with seconds, e.g. "2026-11-22T08:15:00Z".
std::string FormatUtc(int64_t unix_seconds);

}  // namespace envelopefs
