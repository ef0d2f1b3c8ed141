// TEMPORARY weak stubs so envelopectl links while the admin subcommands are written; each real
// command file overrides its stub. Delete this file once all commands exist.
#include "cli.h"
#include "envelopefs/error.h"

namespace envelopefs::cli {
#define ENVELOPEFS_PENDING(name)                                              \
  __attribute__((weak)) int name(const Args&) {                              \
    throw Error(ErrorKind::kUsage, "this command is not implemented yet");   \
  }
ENVELOPEFS_PENDING(RunInspect)
ENVELOPEFS_PENDING(RunKeys)
ENVELOPEFS_PENDING(RunRewrap)
ENVELOPEFS_PENDING(RunVerify)
ENVELOPEFS_PENDING(RunAudit)
ENVELOPEFS_PENDING(RunDecrypt)
ENVELOPEFS_PENDING(RunLs)
}  // namespace envelopefs::cli
