#include "envelopefs/shown_ctime.h"

#include <sys/xattr.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "envelopefs/beneath.h"
#include "envelopefs/encoding.h"

namespace envelopefs {
namespace {

constexpr long kNanosPerSecond = 1'000'000'000;

void PutTime(uint8_t* out, const struct timespec& t) {
  StoreLe64(out, static_cast<uint64_t>(t.tv_sec));
  StoreLe32(out + 8, static_cast<uint32_t>(t.tv_nsec));
}
std::optional<struct timespec> GetTime(const uint8_t* in) {
  const uint32_t nsec = LoadLe32(in + 8);
  if (nsec >= kNanosPerSecond) return std::nullopt;
  struct timespec t {};
  t.tv_sec = static_cast<time_t>(static_cast<int64_t>(LoadLe64(in)));
  t.tv_nsec = static_cast<long>(nsec);
  return t;
}

// a - b in nanoseconds, saturated far beyond any slack.
int64_t DiffNanos(const struct timespec& a, const struct timespec& b) {
  const int64_t kFar = int64_t{1} << 40;
  int64_t seconds = 0;
  // The stamp is read from the cipher dir: any value, so the difference may overflow (found by
  // fuzz_shown_ctime).
  if (__builtin_sub_overflow(static_cast<int64_t>(a.tv_sec), static_cast<int64_t>(b.tv_sec),
                             &seconds) ||
      seconds > kFar / kNanosPerSecond || seconds < -kFar / kNanosPerSecond) {
    return a.tv_sec > b.tv_sec ? kFar : -kFar;
  }
  return seconds * kNanosPerSecond + (a.tv_nsec - b.tv_nsec);
}

std::chrono::system_clock::time_point ToTimePoint(const struct timespec& t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec)));
}

// Whether `record` is about a backing file whose change time is `ctime`: the one that writing
// it left.
bool Applies(const ShownCtimeRecord& record, const struct timespec& ctime) {
  const int64_t after_stamp = DiffNanos(ctime, record.stamp);
  const int64_t early = std::chrono::nanoseconds(kShownCtimeEarly).count();
  const int64_t late = std::chrono::nanoseconds(kShownCtimeLate).count();
  return after_stamp >= -early && after_stamp <= late;
}

// When a change of a file whose record was stamped `stamp` can no longer be mistaken for the
// recording's own: a later change's ctime comes from the same coarse clock, up to
// kShownCtimeEarly behind the real time.
std::chrono::system_clock::time_point SettledAfter(const struct timespec& stamp) {
  return ToTimePoint(stamp) + kShownCtimeLate + kShownCtimeEarly + std::chrono::milliseconds(1);
}

// The record of `fd` (any fd, O_PATH included), if it has a well-formed one.
std::optional<ShownCtimeRecord> ReadRecord(int fd) {
  std::array<uint8_t, kShownCtimeValueSize> value{};
  ssize_t n = ::fgetxattr(fd, kShownCtimeXattr, value.data(), value.size());
  if (n < 0 && errno == EBADF) {  // an O_PATH descriptor
    n = ::getxattr(ProcFdPath(fd).c_str(), kShownCtimeXattr, value.data(), value.size());
  }
  if (n < 0) return std::nullopt;  // none, too long (ERANGE) or no xattr support
  return DecodeShownCtime(std::span<const uint8_t>(value.data(), static_cast<size_t>(n)));
}

}  // namespace

std::array<uint8_t, kShownCtimeValueSize> EncodeShownCtime(const ShownCtimeRecord& record) {
  std::array<uint8_t, kShownCtimeValueSize> out{};
  PutTime(out.data(), record.shown);
  PutTime(out.data() + 12, record.stamp);
  return out;
}

std::optional<ShownCtimeRecord> DecodeShownCtime(std::span<const uint8_t> value) {
  if (value.size() != kShownCtimeValueSize) return std::nullopt;
  auto shown = GetTime(value.data());
  auto stamp = GetTime(value.data() + 12);
  if (!shown || !stamp) return std::nullopt;
  return ShownCtimeRecord{*shown, *stamp};
}

struct timespec ShownCtime(const struct timespec& ctime, std::span<const uint8_t> value) {
  auto record = DecodeShownCtime(value);
  return record && Applies(*record, ctime) ? record->shown : ctime;
}

struct timespec ReadShownCtime(int fd, const struct stat& st) {
  auto record = ReadRecord(fd);
  return record && Applies(*record, st.st_ctim) ? record->shown : st.st_ctim;
}

void ForgetShownCtime(int fd) {
  if (::fremovexattr(fd, kShownCtimeXattr) != 0 && errno == EBADF) {  // an O_PATH descriptor
    ::removexattr(ProcFdPath(fd).c_str(), kShownCtimeXattr);
  }
}

void SettleShownCtime(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return;
  auto record = ReadRecord(fd);
  if (record && Applies(*record, st.st_ctim) &&
      std::chrono::system_clock::now() < SettledAfter(record->stamp)) {
    ForgetShownCtime(fd);
  }
}

std::optional<std::chrono::system_clock::time_point> RecordShownCtime(
    int fd, const struct timespec& shown) {
  ShownCtimeRecord record{shown, {}};
  ::clock_gettime(CLOCK_REALTIME, &record.stamp);
  const auto value = EncodeShownCtime(record);
  if (::fsetxattr(fd, kShownCtimeXattr, value.data(), value.size(), 0) != 0) return std::nullopt;
  return SettledAfter(record.stamp);
}

}  // namespace envelopefs
