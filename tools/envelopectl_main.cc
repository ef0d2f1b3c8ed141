// envelopectl — administers envelopefs volumes: create, inspect, rotate and rewrap keys, retire
// old versions, verify, audit and restore without FUSE. See envelopectl(1).
#include <cstdio>
#include <cstring>
#include <string>

#include "cli.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/process_hardening.h"

namespace {

constexpr char kUsage[] =
    "usage: envelopectl COMMAND [OPTIONS] ARGS\n"
    "\n"
    "commands:\n"
    "  init [--keyfile F | --passfile F] [--chunk-size SIZE] [--plaintext-names] CIPHERDIR\n"
    "  inspect FILE [--json]\n"
    "  keys list CIPHERDIR [--json] [--check] [--prometheus FILE]\n"
    "  keys rotate CIPHERDIR\n"
    "  keys retire CIPHERDIR --version N\n"
    "  keys change-master CIPHERDIR (--new-keyfile F | --new-passfile F)\n"
    "  keys policy CIPHERDIR [--rotate-after-days N] [--audit-log on|off] [--json]\n"
    "  rewrap CIPHERDIR [--jobs N] [--shard K/N]\n"
    "  verify CIPHERDIR [--json] [--jobs N]\n"
    "  audit CIPHERDIR [--json] [--jobs N] [--prometheus FILE]\n"
    "  decrypt CIPHERFILE [-o OUT]\n"
    "  decrypt CIPHERDIR -o DIR [--same-owner]\n"
    "  ls CIPHERDIR [--json]\n"
    "\n"
    "Key options (--keyfile FILE, --passfile FILE; \"-\" reads stdin) apply to every command;\n"
    "without them the passphrase is asked on the terminal (keys list and audit then run\n"
    "without a key, from what needs none). A key or passphrase file that group\n"
    "or others can read is refused unless --insecure-keyfile is given. See envelopectl(1).\n";

}  // namespace

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
    if (args.help || args.words.empty()) {
      std::fputs(kUsage, args.help ? stdout : stderr);
      return args.help ? kExitOk : kExitUsage;
    }
    const std::string& command = args.words[0];
    SetAuditCommand(command == "keys" && args.words.size() > 1 ? "keys " + args.words[1] : command);
    if (command == "init") return cli::RunInit(args);
    if (command == "inspect") return cli::RunInspect(args);
    if (command == "keys") return cli::RunKeys(args);
    if (command == "rewrap") return cli::RunRewrap(args);
    if (command == "verify") return cli::RunVerify(args);
    if (command == "audit") return cli::RunAudit(args);
    if (command == "decrypt") return cli::RunDecrypt(args);
    if (command == "ls") return cli::RunLs(args);
    throw Error(ErrorKind::kUsage, "unknown command \"" + command + "\" (see envelopectl --help)");
  } catch (const Error& e) {
    std::fprintf(stderr, "envelopectl: %s\n", e.what());
    return ExitCodeFor(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "envelopectl: %s\n", e.what());
    return kExitIo;
  }
}
