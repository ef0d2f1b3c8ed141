// envelopectl — administers envelopefs volumes: create, inspect, rotate and rewrap keys, retire
// old versions, verify, audit and restore without FUSE. See envelopectl(1).
#include <cstdio>
#include <cstring>
#include <string>

#include "cli.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"
#include "envelopefs/error_mapping.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/process_hardening.h"
#include "help.h"

int main(int argc, char** argv) {
  using namespace envelopefs;
  HardenProcess();
  SetAuditProgram("envelopectl");
  try {
    cli::Args args = cli::ParseArgs(argc, argv);
    if (args.show_version) {
      std::printf("envelopectl %s\n", ENVELOPEFS_VERSION);
      return kExitOk;
    }
    if (args.words.empty()) {
      std::fputs(cli::OverviewHelp(), args.help ? stdout : stderr);
      return args.help ? kExitOk : kExitUsage;
    }
    if (args.help) {
      const char* help = cli::CommandHelp(args.words);
      if (help == nullptr) {
        throw Error(ErrorKind::kUsage,
                    "unknown command \"" + args.words[0] + "\" (see envelopectl --help)");
      }
      std::fputs(help, stdout);
      return kExitOk;
    }
    const std::string& command = args.words[0];
    if (args.has_command && command != "quiesce") {
      throw Error(ErrorKind::kUsage, "\"--\" and a command belong to envelopectl quiesce only");
    }
    SetAuditCommand(command == "keys" && args.words.size() > 1 ? "keys " + args.words[1] : command);
    if (command == "init") return cli::RunInit(args);
    if (command == "inspect") return cli::RunInspect(args);
    if (command == "keys") return cli::RunKeys(args);
    if (command == "rewrap") return cli::RunRewrap(args);
    if (command == "verify") return cli::RunVerify(args);
    if (command == "audit") return cli::RunAudit(args);
    if (command == "decrypt") return cli::RunDecrypt(args);
    if (command == "ls") return cli::RunLs(args);
    if (command == "quiesce") return cli::RunQuiesce(args);
    throw Error(ErrorKind::kUsage, "unknown command \"" + command + "\" (see envelopectl --help)");
  } catch (const std::exception& e) {
    // Error by its kind; a bug (std::logic_error) is no I/O error: it says so and exits 10.
    std::fprintf(stderr, "envelopectl: %s\n", MessageOf(e).c_str());
    return ExitCodeFor(ErrorKindOf(e));
  }
}
