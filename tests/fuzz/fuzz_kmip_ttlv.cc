// libFuzzer target: the KMIP TTLV decoder (DecodeTtlv, TtlvMessageSize), which reads the bytes a
// key server sends over TLS: untrusted. Input: the message. A decoded message encodes back to
// exactly its bytes (the decoder is strict: no padding or length slack).
#include <cstring>

#include "envelopefs/error.h"
#include "envelopefs/kmip_ttlv.h"
#include "fuzz_support.h"

using namespace envelopefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  try {
    size_t total = TtlvMessageSize(bytes);
    fuzz::Check(total >= kTtlvHeaderSize && total <= kMaxTtlvMessage, "message size bounded");
  } catch (const Error&) {
  }
  try {
    TtlvItem item = DecodeTtlv(bytes);
    std::vector<uint8_t> again = EncodeTtlv(item);
    fuzz::Check(again.size() == size && std::memcmp(again.data(), data, size) == 0,
                "a decoded message encodes back to its bytes");
  } catch (const Error&) {
  }
  return 0;
}
