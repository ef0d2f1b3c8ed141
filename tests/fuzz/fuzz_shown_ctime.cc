// libFuzzer target: the shown change time kept in a cipher file's `user.envelopefs.ctime`
// extended attribute (DecodeShownCtime, ShownCtime), which the daemon reads from every backing
// file it stats. The value is not authenticated: any bytes may be there.
// Input: the backing file's change time (seconds i64 LE, within 2^40 s of the epoch; nanoseconds
// u32 LE), then the attribute's value.
#include <cstring>

#include "envelopefs/shown_ctime.h"
#include "fuzz_support.h"

using namespace envelopefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  struct timespec ctime {};
  ctime.tv_sec = static_cast<time_t>(static_cast<int64_t>(in.U64()) % (int64_t{1} << 40));
  ctime.tv_nsec = static_cast<long>(in.U32() % 1000000000u);
  std::span<const uint8_t> value = in.Rest();
  const auto record = DecodeShownCtime(value);
  if (record) {
    const auto encoded = EncodeShownCtime(*record);
    fuzz::Check(value.size() == encoded.size() &&
                    std::memcmp(value.data(), encoded.data(), encoded.size()) == 0,
                "a decoded record encodes back to its value");
  }
  const struct timespec shown = ShownCtime(ctime, value);
  fuzz::Check(SameTime(shown, ctime) || (record && SameTime(shown, record->shown)),
              "the shown change time is the file's or the recorded one");
  return 0;
}
