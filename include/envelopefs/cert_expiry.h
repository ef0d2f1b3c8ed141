// Certificate expiry — when a client certificate (--tls-cert) expires, and which of the alert
// thresholds (30, 14 and 7 days before) it has crossed, for `envelopectl keys list --check`.
// Pure apart from reading the file; thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace envelopefs {

inline constexpr int kCertAlertDays[] = {30, 14, 7};

struct CertExpiry {
  std::string file;
  int64_t not_after = 0;  // Unix seconds
  int64_t days_left = 0;  // whole days from `now` to not_after, rounded down (negative: expired)
  // The smallest alert threshold (30, 14 or 7) that days_left is at or below, 0 when it is
  // further out; an expired certificate is within all of them (7).
  int alert_days = 0;
};

// Reads the first PEM certificate of `file`; throws Error(kUsage) with one line if there is none.
CertExpiry CheckCertExpiry(const std::string& file, int64_t now);

// The alert threshold for `days_left` (see CertExpiry::alert_days).
int CertAlertDays(int64_t days_left);

}  // namespace envelopefs
