// Process hardening — see process_hardening.h.
#include "envelopefs/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "envelopefs/log.h"

namespace envelopefs {

void HardenProcess() {
  struct rlimit none {};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) {
    Log(LogLevel::kWarning, std::string("cannot disable core dumps: ") + std::strerror(errno));
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    Log(LogLevel::kWarning,
        std::string("cannot make the process non-dumpable: ") + std::strerror(errno));
  }
}

}  // namespace envelopefs
