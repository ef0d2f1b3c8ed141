// TOML date-times <-> Unix seconds (UTC), for the config and keyring files. Pure, thread-safe.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <ctime>

namespace envelopefs {

inline toml::date_time ToTomlTime(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  return toml::date_time{toml::date{tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday},
                         toml::time{tm.tm_hour, tm.tm_min, tm.tm_sec}, toml::time_offset{}};
}

inline int64_t FromTomlTime(const toml::date_time& dt) {
  struct tm tm {};
  tm.tm_year = dt.date.year - 1900;
  tm.tm_mon = dt.date.month - 1;
  tm.tm_mday = dt.date.day;
  tm.tm_hour = dt.time.hour;
  tm.tm_min = dt.time.minute;
  tm.tm_sec = dt.time.second;
  int64_t offset = dt.offset ? int64_t{dt.offset->minutes} * 60 : 0;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

}  // namespace envelopefs
