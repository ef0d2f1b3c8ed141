// Process hardening for programs that hold keys (the daemon and envelopectl).
#pragma once

namespace envelopefs {

// Makes the process non-dumpable (PR_SET_DUMPABLE 0: no core file, no ptrace or /proc/PID/mem
// access by other processes of the same user) and sets the core-file limit to zero, so no key
// material ever reaches a core dump. Call first thing in main(). Never fails loudly: a warning
// is logged if the kernel refuses.
void HardenProcess();

}  // namespace envelopefs
