// envelopefs::Error — the one exception type of the core library, and the core's error
// convention.
//
// Error convention of the core library (src/core, include/envelopefs): a function either throws
// Error(kind) with a one-line, user-facing message, or, where its header says so (the data path
// of CipherFile, NameTransform's file operations), returns 0 or a byte count on success and
// -errno on failure, never throwing. Damage and tampering are also reported to the caller's
// DamageReporter (damage_reporter.h). A violated invariant (a bug, never caused by input,
// however hostile) is a std::logic_error. The programs map kinds to what they report in one
// place, error_mapping.h: the daemon to an errno, envelopectl and the daemon's start-up to an
// exit code. Thread-safe: immutable.
#pragma once

#include <stdexcept>
#include <string>

namespace envelopefs {

enum class ErrorKind {
  kUsage,           // bad command line
  kWrongKey,        // the master key / passphrase does not open the keyring
  kConfig,          // the volume config or keyring is missing, damaged or foreign
  kAuthentication,  // a header, chunk, name or record failed authentication
  kFormat,          // not an envelopefs file, or an unsupported version
  kIo,              // a system call failed
  kKeyUnavailable,  // a KEK version the file needs is retired or missing
  kState,           // the operation is refused in the current state (e.g. retire in use)
  kInternal,        // a violated invariant: a bug (ErrorKindOf gives it for std::logic_error)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A message about one named object: "NAME: WHAT", or WHAT alone when `name` is empty (a caller
// that shows the name in its own format passes none, and never has to strip it off again).
inline std::string Named(const std::string& name, const std::string& what) {
  return name.empty() ? what : name + ": " + what;
}

// Throws Error(kIo) with "what: strerror(errno)"; use right after a failed system call.
[[noreturn]] void ThrowSystemError(const std::string& what);

}  // namespace envelopefs
