// libFuzzer target: the audit log reader (VerifyAuditLog: JSON lines, the hash chain, sequence
// numbers, MACs, and the end of the log against this host's record), as `envelopectl audit`
// checks envelopefs.audit.log from the cipher dir.
//
// Input: mode (u8), the host's recorded sequence (u64 LE), then the log's text (the test
// volume's real log in the seeds). Mode bit 0: this host recorded that sequence (with the last
// line's digest when bit 1); bit 2: the lines are re-chained (prev, and seq when bit 3) and
// MAC'ed with the volume's audit key, as the writer would, so that the checks behind the MAC
// run on fuzzed fields; bit 4: verify with the key (else the chain only). A log made whole by
// bits 2-3 must verify with the key when no host record is involved.
#include <nlohmann/json.hpp>
#include <string>

#include "envelopefs/audit_log.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/host_state.h"
#include "fuzz_support.h"

using namespace envelopefs;

namespace {

// The writer's form of a line (audit_log.cc, SealLine): compact JSON, then the MAC over that
// text as the last field.
std::string Seal(const nlohmann::json& line, const SecureBytes& key) {
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::string mac = ToHex(HmacSha256(key.span(), AsBytes(text)));
  text.pop_back();
  return text + ",\"mac\":\"" + mac + "\"}\n";
}

// Re-chains and MACs every line that is a JSON object; false if some line is not one.
bool Rechain(std::string& text, bool renumber, const SecureBytes& key) {
  std::string out, previous;
  bool whole = renumber;  // every line an object, numbered from 1
  uint64_t seq = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string raw = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    nlohmann::json line = nlohmann::json::parse(raw, nullptr, false);
    if (!line.is_object()) {
      whole = false;
      raw += "\n";
    } else {
      line.erase("mac");
      if (renumber) line["seq"] = ++seq;
      line["prev"] = ToHex(Sha256(AsBytes(previous)));
      raw = Seal(line, key);
    }
    out += raw;
    previous = raw;
  }
  text = out;
  return whole;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const uint64_t mark = in.U64();
  std::string text(in.RestText());
  Volume& volume = fuzz::TestVolume();
  const VolumeConfig& config = volume.config();
  std::filesystem::remove(HostState(config.volume_id).file());
  bool whole = false;
  if (mode & 4) whole = Rechain(text, (mode & 8) != 0, volume.audit_key());
  if (mode & 1) {
    const size_t last = text.rfind('\n', text.size() >= 2 ? text.size() - 2 : 0);
    const std::string last_line = text.substr(last == std::string::npos ? 0 : last + 1);
    HostState(config.volume_id)
        .RecordAuditLine(mark, (mode & 2) ? ToHex(Sha256(AsBytes(last_line))) : "00");
  }
  UniqueFd dir = fuzz::FreshDir("audit");
  fuzz::WriteFileAt(dir.get(), kAuditLogFileName, AsBytes(text));
  const bool keyed = (mode & 16) != 0;
  AuditLogReport report = VerifyAuditLog(dir.get(), config, keyed ? &volume.audit_key() : nullptr);
  fuzz::Check(report.lines >= report.authenticated + report.unauthenticated,
              "the report counts no more lines than the log holds");
  if (whole && keyed && (mode & 1) == 0 && !text.empty()) {
    fuzz::Check(report.problems.empty(), "a log chained and MAC'ed as the writer does verifies");
  }
  return 0;
}
