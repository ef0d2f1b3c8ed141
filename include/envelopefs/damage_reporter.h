// DamageReporter — how the core library tells its caller about damaged or tampered data.
//
// The caller passes an implementation in (to CipherFile::Create/Open, Volume::
// ReloadKeyringIfChanged, RewrapFiles), as LevelDB's log::Reader takes a Reporter: the library
// finds the damage and decides its own result (a -EIO, an Error, a failed outcome); the reporter
// decides what else happens. The daemon logs every report and writes it to the audit log
// (src/daemon/damage_audit.h); envelopectl collects the detail of the file it is checking and
// prints it once, in its own format (DamageCollector in tools/common.h). Nothing is reported
// through process-wide state.
//
// Reports carry names as the raw bytes found in the cipher dir: a reporter that writes them
// anywhere escapes them (EscapeName). Thread-safety: a reporter given to a CipherFile is called
// from every thread that uses the file, so implementations must be thread-safe unless the
// caller uses the file from one thread only. ReportDamage never throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace envelopefs {

// One damaged or tampered object.
struct Damage {
  std::string file;               // the cipher path (a file, directory, keyring), raw bytes
  std::optional<uint64_t> chunk;  // the chunk, when the damage is in one
  std::string detail;             // one line without the file name, e.g. "chunk 3: ... (EIO)"
};

class DamageReporter {
 public:
  virtual ~DamageReporter() = default;
  // Damage or tampering was found in `damage.file`; the operation that found it fails.
  virtual void Damaged(const Damage& damage) = 0;
  // `file` was opened unsealed: its last write was interrupted (or an older state of it was
  // put back), so its length and chunk versions are not proven. Not damage: the file opens.
  // The default logs a warning naming the file.
  virtual void Unsealed(const std::string& file);
  // One copy of a header record of `damage.file` (a state or key slot; they come in twos) did
  // not authenticate and the other was used: a torn write, or tampering (header_writes.h).
  // The file opens and reads correctly. The default logs a warning naming the file.
  virtual void CopyDamaged(const Damage& damage);
};

// Logs each report as one error line, "tamper: FILE: DETAIL" (escaped), through Log().
class LoggingDamageReporter : public DamageReporter {
 public:
  void Damaged(const Damage& damage) override;
};

// Calls reporter.Damaged(damage); never throws (a reporter that fails is noted on stderr): the
// caller has already decided its result.
void ReportDamage(DamageReporter& reporter, const Damage& damage) noexcept;
// Calls reporter.Unsealed(file); never throws.
void ReportUnsealed(DamageReporter& reporter, const std::string& file) noexcept;
// Calls reporter.CopyDamaged(damage); never throws.
void ReportCopyDamaged(DamageReporter& reporter, const Damage& damage) noexcept;

}  // namespace envelopefs
