// envelopefs::Error — the one exception type of the core library.
//
// Every failure carries a one-line, user-facing message and a category that the programs map to
// an exit code (see exit_codes.h) and the daemon maps to an errno. Thread-safe: immutable.
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
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Throws Error(kIo) with "what: strerror(errno)"; use right after a failed system call.
[[noreturn]] void ThrowSystemError(const std::string& what);

}  // namespace envelopefs
