// The process hardening of programs that hold keys: no core dumps, not dumpable.
#include "envelopefs/process_hardening.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace envelopefs {
namespace {

TEST(ProcessHardening, NoCoreDumpsAndNotDumpable) {
  pid_t pid = fork();
  if (pid == 0) {  // in a child: the test runner itself stays as it is
    HardenProcess();
    struct rlimit core {};
    bool ok = getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur == 0 && core.rlim_max == 0 &&
              prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace envelopefs
