// Process exit codes shared by envelopefs and envelopectl (documented in their man pages, EXIT
// STATUS). Which ErrorKind exits with which code is decided in error_mapping.h only.
#pragma once

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
  kExitInternal = 10,       // internal error: a bug (an invariant did not hold)
};

}  // namespace envelopefs
