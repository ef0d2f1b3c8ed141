// CipherHeader — see cipher_header.h.
#include "envelopefs/cipher_header.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "envelopefs/encoding.h"

namespace envelopefs {

namespace {
constexpr char kFingerprintLabel[] = "envelopefs dek fingerprint v1";
}  // namespace

uint64_t ClosedFilePlainSize(uint64_t cipher_size, uint32_t volume_chunk_size,
                             const std::function<std::optional<ChunkLayout>()>& header_layout) {
  ChunkLayout layout{volume_chunk_size, /*indexed=*/true};
  if (!layout.SizeIsVersionIndependent(cipher_size) && header_layout) {
    if (std::optional<ChunkLayout> own = header_layout()) layout = *own;
  }
  return layout.ReportedPlainSize(cipher_size);
}

std::optional<ChunkLayout> HeaderLayout(int fd) {
  const HeaderRead header = ReadHeader(fd);
  if (header.status != HeaderStatus::kOk) return std::nullopt;
  return header.layout();
}

std::span<const uint8_t> HeaderRead::FixedBytes() const {
  return std::span<const uint8_t>(bytes.data(), format::kFixedSize);
}

std::span<const uint8_t, format::kKeySlotSize> HeaderRead::SlotBytes(int slot) const {
  return std::span<const uint8_t, format::kKeySlotSize>(bytes.data() + format::kKeySlotOffset[slot],
                                                        format::kKeySlotSize);
}

HeaderRead ReadHeader(int fd) {
  HeaderRead r;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    r.error = errno;
    r.reason = std::string("fstat: ") + std::strerror(errno);
    return r;
  }
  r.cipher_size = static_cast<uint64_t>(st.st_size);
  r.dev = st.st_dev;
  r.ino = st.st_ino;
  size_t got = 0;
  while (got < r.bytes.size()) {
    ssize_t n = ::pread(fd, r.bytes.data() + got, r.bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.error = errno;
      r.reason = std::string("read: ") + std::strerror(errno);
      return r;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  const size_t magic_len = std::min(got, format::kMagic.size());
  if (got == 0) {
    r.status = HeaderStatus::kDamaged;
    r.reason = "empty file without a header (cut to nothing, or an interrupted create)";
    return r;
  }
  if (std::memcmp(r.bytes.data(), format::kMagic.data(), magic_len) != 0) {
    r.status = HeaderStatus::kNotEnvelope;
    r.reason = "not an envelopefs file (no envelopefs header)";
    return r;
  }
  r.status = HeaderStatus::kDamaged;
  if (got < format::kHeaderSize) {
    r.reason = "short header (" + std::to_string(got) + " of " +
               std::to_string(format::kHeaderSize) + " bytes)";
    return r;
  }
  try {
    r.fixed = ParseFixedHeader(r.bytes);
  } catch (const Error& e) {
    r.reason = e.what();
    return r;
  }
  for (int i = 0; i < 2; ++i) r.slots[i] = ParseKeySlot(r.SlotBytes(i));
  r.status = HeaderStatus::kOk;
  return r;
}

std::optional<std::string> LengthProblem(const HeaderRead& header, const FileState* state) {
  std::optional<uint64_t> plain = header.layout().PlainSize(header.cipher_size);
  if (!plain) {
    return "cipher file length " + std::to_string(header.cipher_size) +
           " is not valid for any plaintext size (cut or extended)";
  }
  if (state != nullptr && state->sealed() && state->size != *plain) {
    return "cipher file length does not match its sealed size of " + std::to_string(state->size) +
           " bytes (cut or extended)";
  }
  return std::nullopt;
}

OpenedHeader OpenHeader(const HeaderRead& header, const KekSource& keks, bool check_length) {
  OpenedHeader out;
  if (header.status != HeaderStatus::kOk) {
    out.kind = header.status == HeaderStatus::kUnreadable ? ErrorKind::kIo : ErrorKind::kFormat;
    out.problem = header.reason;
    return out;
  }
  // Each key slot that unwraps gives a DEK; the first (newest generation first) whose state
  // records authenticate is the file's. Both slots hold the same DEK except after a torn
  // truncation to zero (CipherFile::Rekey), where the new DEK's slot may stand beside state
  // records still of the old one.
  const int newest = header.NewestSlot();
  bool any_key = false;
  std::optional<SecureBytes> deks[2];
  bool known_kek[2] = {false, false};
  for (int slot : {newest, 1 - newest}) {
    const KeySlotInfo& info = header.slots[slot];
    SecureBytes kek;
    if (!keks.FindKek(info.kek_id, info.kek_version, kek)) continue;
    any_key = known_kek[slot] = true;
    deks[slot] = UnwrapDek(header.FixedBytes(), header.SlotBytes(slot), kek);
  }
  if (!deks[0] && !deks[1]) {
    const KeySlotInfo& info = header.slots[newest];
    out.kind = any_key ? ErrorKind::kAuthentication : ErrorKind::kKeyUnavailable;
    out.problem = any_key ? "header does not authenticate (no key slot opens)"
                          : "needs KEK version " + std::to_string(info.kek_version) +
                                ", which is retired or unknown";
    return out;
  }
  // One locked buffer per thread: audit checks 100k headers, and every fresh SecureBytes of
  // more than a slot is an mmap/mlock/munmap.
  thread_local SecureBytes state_key(kKeySize);
  StateChoice choice;
  for (int slot : {newest, 1 - newest}) {
    if (!deks[slot]) continue;
    HkdfSha256(deks[slot]->span(), format::kStateKeyLabel, state_key.mutable_span());
    StateChoice tried = SelectState(header.fixed, state_key, header.bytes);
    if (!tried.state) {
      if (choice.problem.empty()) choice.problem = tried.problem;  // the newest DEK's reason
      continue;
    }
    choice = std::move(tried);
    out.slot = slot;
    out.dek = std::move(*deks[slot]);
    break;
  }
  if (!choice.state) {
    out.problem = choice.problem;
    return out;
  }
  out.slot_opens[out.slot] = true;
  const int other = 1 - out.slot;
  out.slot_opens[other] = deks[other] && deks[other]->size() == out.dek.size() &&
                          sodium_memcmp(deks[other]->data(), out.dek.data(), out.dek.size()) == 0;
  out.slots_disagree = deks[other] && !out.slot_opens[other];
  std::string slot_note;
  if (out.slots_disagree) {
    slot_note = " holds another data key (a torn truncation to zero, or tampering)";
  } else if (known_kek[other] && !deks[other]) {
    slot_note = " does not authenticate (a torn write, or tampering)";
  }
  if (!slot_note.empty()) {
    choice.note += std::string(choice.note.empty() ? "" : "; ") + "key slot " +
                   std::to_string(other) + slot_note;
  }
  out.note = std::move(choice.note);
  out.state = *choice.state;
  out.plain_size = header.layout().PlainSize(header.cipher_size);
  if (check_length) {
    if (auto problem = LengthProblem(header, &out.state)) {
      out.problem = *problem;
      return out;
    }
  }
  out.ok = true;
  return out;
}

Sha256Digest DekFingerprint(const SecureBytes& dek) {
  return HmacSha256(dek.span(), AsBytes(kFingerprintLabel));
}

Sha256Digest WrappedDekDigest(const HeaderRead& header, int slot) {
  return Sha256(header.SlotBytes(slot).subspan(
      format::kKeySlotNonceOffset, format::kKeySlotRecordEnd - format::kKeySlotNonceOffset));
}

}  // namespace envelopefs
