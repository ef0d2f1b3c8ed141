// Error kinds to errno values and exit codes — see error_mapping.h.
#include "envelopefs/error_mapping.h"

#include <cerrno>
#include <stdexcept>

namespace envelopefs {

ErrorKind ErrorKindOf(const std::exception& e) noexcept {
  if (const auto* error = dynamic_cast<const Error*>(&e)) return error->kind();
  if (dynamic_cast<const std::logic_error*>(&e) != nullptr) return ErrorKind::kInternal;
  return ErrorKind::kIo;
}

std::string MessageOf(const std::exception& e) {
  const std::string what = e.what();
  return ErrorKindOf(e) == ErrorKind::kInternal ? "internal error (a bug): " + what : what;
}

int ErrnoFor(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kKeyUnavailable:
      return EACCES;
    case ErrorKind::kUsage:
    case ErrorKind::kWrongKey:
    case ErrorKind::kConfig:
    case ErrorKind::kAuthentication:
    case ErrorKind::kFormat:
    case ErrorKind::kIo:
    case ErrorKind::kState:
    case ErrorKind::kInternal:
      return EIO;
  }
  return EIO;
}

int ExitCodeFor(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kWrongKey:
      return kExitWrongKey;
    case ErrorKind::kConfig:
      return kExitConfig;
    case ErrorKind::kAuthentication:
    case ErrorKind::kFormat:
      return kExitDamaged;
    case ErrorKind::kIo:
      return kExitIo;
    case ErrorKind::kKeyUnavailable:
      return kExitKeyUnavailable;
    case ErrorKind::kState:
      return kExitRefused;
    case ErrorKind::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace envelopefs
