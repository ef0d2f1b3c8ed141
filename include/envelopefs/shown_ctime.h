// ShownCtime — the change time the mount shows for a cipher file whose header we rewrote.
//
// Sealing a closed file and rewrapping its DEK rewrite the header only: the user changed nothing,
// so `stat` through the mount must not show a new change time (ext4 would not; borg, restic and
// git go by it). The backing file's ctime cannot be set back, so after such a rewrite the change
// time to show is recorded in the backing file's extended attribute `user.envelopefs.ctime`,
// together with when it was recorded. It applies only while the backing ctime is still the one
// that recording left (within kShownCtimeSlack of the stamp): any later change of the backing
// file, through the mount or not, makes it void. Without xattr support the backing ctime shows.
//
// The value (envelopefs-format(5)) is 24 bytes, little-endian: shown seconds (i64), shown
// nanoseconds (u32), stamp seconds (i64), stamp nanoseconds (u32). It is not authenticated, like
// the backing file's times themselves, and holds no plaintext; anything malformed is ignored.
// All functions are thread-safe.
#pragma once

#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>

namespace envelopefs {

inline constexpr char kShownCtimeXattr[] = "user.envelopefs.ctime";
inline constexpr size_t kShownCtimeValueSize = 24;
// How far the backing ctime that recording leaves may lie from its stamp: before it by up to a
// tick of the kernel's coarse clock (file times come from it), after it by the latency of one
// system call.
inline constexpr std::chrono::milliseconds kShownCtimeEarly{20};
inline constexpr std::chrono::milliseconds kShownCtimeLate{5};

inline bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

struct ShownCtimeRecord {
  struct timespec shown {};
  struct timespec stamp {};
};
std::array<uint8_t, kShownCtimeValueSize> EncodeShownCtime(const ShownCtimeRecord& record);
std::optional<ShownCtimeRecord> DecodeShownCtime(std::span<const uint8_t> value);

// The change time to show for a backing file with change time `ctime` and attribute value
// `value` (empty if it has none): the recorded one if the value is well formed and `ctime` is the
// one recording it left, else `ctime`.
struct timespec ShownCtime(const struct timespec& ctime, std::span<const uint8_t> value);

// Reads the attribute of `fd` (any fd, O_PATH included) and returns ShownCtime for its
// attributes `st`.
struct timespec ReadShownCtime(int fd, const struct stat& st);

// After a header-only rewrite of `fd` (open for writing): records `shown` as the change time to
// show. Returns the time until which a change of the file could be mistaken for the recording's
// own (~26 ms; a caller that changes the file before then calls ForgetShownCtime first), or
// std::nullopt if nothing was recorded (no xattr support): the backing ctime shows then.
std::optional<std::chrono::system_clock::time_point> RecordShownCtime(int fd,
                                                                      const struct timespec& shown);

// Removes `fd`'s record (any fd, O_PATH included). Before a change of the file that could
// still be mistaken for the recording's own: the change time then shows that change.
void ForgetShownCtime(int fd);

// Before a change of `fd`'s file by someone other than the writer of its record (a chmod of a
// closed file): forgets the record if it applies and the change could be mistaken for its own.
void SettleShownCtime(int fd);

}  // namespace envelopefs
