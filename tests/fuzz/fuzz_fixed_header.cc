// libFuzzer target: the parts of a cipher file's header that are read without a key (the fixed
// part and the key slots' ids, ParseFixedHeader/ParseKeySlot, as ReadHeader, inspect and audit
// read them) and the chunk layout's size math they feed (a cipher file's length is untrusted).
// Input: cipher file length (u64 LE), then the header bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "envelopefs/error.h"
#include "envelopefs/file_header.h"
#include "fuzz_support.h"

using namespace envelopefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint64_t cipher_size = in.U64() & ((uint64_t{1} << 62) - 1);  // any file length
  std::span<const uint8_t> header = in.Rest();
  FixedHeader fixed;
  try {
    fixed = ParseFixedHeader(header);
  } catch (const Error&) {
    return 0;
  }
  if (header.size() >= format::kHeaderSize) {
    for (int i = 0; i < 2; ++i) {
      ParseKeySlot(std::span<const uint8_t, format::kKeySlotSize>(
          header.data() + format::kKeySlotOffset[i], format::kKeySlotSize));
    }
  }
  const ChunkLayout layout = ChunkLayout::Of(fixed);
  const std::optional<uint64_t> plain = layout.PlainSize(cipher_size);
  const uint64_t reported = layout.ReportedPlainSize(cipher_size);
  if (plain) {
    fuzz::Check(*plain == reported, "ReportedPlainSize == PlainSize when there is one");
    fuzz::Check(layout.CipherSize(*plain) == cipher_size, "CipherSize(PlainSize(n)) == n");
  } else if (cipher_size >= format::kHeaderSize) {
    fuzz::Check(layout.CipherSize(reported) <= cipher_size, "the reported size fits the file");
  }
  layout.SizeIsVersionIndependent(cipher_size);
  const uint64_t count = layout.ChunkCount(reported);
  layout.IndexBlockCount(count);
  if (reported > 0) {
    const uint64_t offset = (cipher_size * 7) % reported;
    const uint64_t end = std::min(reported, offset + 1 + cipher_size % 100000);
    const ChunkLayout::Span span = layout.SpanOf(offset, end, reported);
    fuzz::Check(span.first <= span.last && span.cipher_lo < span.cipher_hi &&
                    span.cipher_hi <= layout.CipherSize(reported),
                "SpanOf lies inside the file");
    layout.PartOf(span.first, offset, end, reported);
    layout.ChunkAt(span.cipher_lo);
    layout.GroupAt(span.cipher_hi - 1);
  }
  return 0;
}
