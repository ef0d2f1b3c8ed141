// Process exit codes shared by envelopefs and envelopectl (documented in their man pages).
#pragma once

#include "envelopefs/error.h"

namespace envelopefs {

enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 2,           // unknown option, missing argument
  kExitWrongKey = 3,        // wrong key file or passphrase
  kExitConfig = 4,          // damaged, missing or foreign config or keyring
  kExitDamaged = 5,         // authentication failure: damaged or tampered data found
  kExitIo = 6,              // I/O error, mount failure
  kExitKeyUnavailable = 7,  // a needed KEK version is retired or missing
  kExitRefused = 8,         // refused in the current state (e.g. retire while in use)
  kExitCheckFailed = 9,     // a --check found something due (e.g. rotation overdue)
};

inline int ExitCodeFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kWrongKey:
      return kExitWrongKey;
    case ErrorKind::kConfig:
      return kExitConfig;
    case ErrorKind::kAuthentication:
      return kExitDamaged;
    case ErrorKind::kFormat:
      return kExitDamaged;
    case ErrorKind::kIo:
      return kExitIo;
    case ErrorKind::kKeyUnavailable:
      return kExitKeyUnavailable;
    case ErrorKind::kState:
      return kExitRefused;
  }
  return kExitIo;
}

}  // namespace envelopefs
