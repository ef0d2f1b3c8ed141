// The envelopectl command line: GNU-style options (in any position) shared by all subcommands,
// and the helpers every subcommand uses to get a key and open a volume. Not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "envelopefs/key_source_options.h"
#include "envelopefs/volume.h"

namespace envelopefs::cli {

struct Shard {
  uint32_t index = 0;  // K in K/N, 1-based as typed, stored 0-based
  uint32_t count = 1;
};

// The key-source options (the current and the new source, insecure_keyfile, pkcs11_create_key,
// and the key sources they name) come from KeySourceOptions; the rest are envelopectl's own.
struct Args : KeySourceOptions {
  std::vector<std::string> words;       // subcommand words and positional arguments, in order
  std::optional<std::string> output;    // -o
  std::optional<uint32_t> kek_version;  // --kek-version N (keys retire; alias: --version N)
  std::optional<Shard> shard;
  unsigned jobs = 0;  // 0: one per core
  uint32_t chunk_size = 0;
  bool plaintext_names = false;
  bool json = false;
  bool check = false;
  bool quiet = false;
  bool help = false;
  bool show_version = false;                  // --version (without a number after keys retire), -V
  std::optional<uint32_t> rotate_after_days;  // keys policy
  std::optional<bool> audit_log;              // keys policy: --audit-log on|off
  bool same_owner = false;                    // decrypt: restore owners (like tar --same-owner)
  std::optional<std::string> prometheus;      // keys list, audit: node_exporter textfile
  std::optional<uint32_t> timeout_seconds;    // quiesce: --timeout SECONDS
  std::optional<uint32_t> slot;               // keys remove-master: --slot N
  bool destroy_old_master = false;            // keys retire --destroy-old-master
  bool has_command = false;                   // a "--" was given
  std::vector<std::string> command;           // the words after "--" (quiesce)
};

// Parses argv; throws Error(kUsage) with a one-line message on unknown or malformed options.
Args ParseArgs(int argc, char** argv);

// Opens the volume with the key options in `args`, recording volume_unlocked / unlock_failed in
// the audit log (read-only commands pass log_unlock = false: a failed unlock is still logged).
// Throws Error.
std::unique_ptr<Volume> OpenVolume(const Args& args, const std::filesystem::path& cipher_dir,
                                   bool log_unlock = true);

// `word` quoted for a POSIX shell if it needs quoting (for commands suggested in messages).
std::string ShellWord(const std::string& word);
// The key option the user gave, ready to paste into a suggested command: " --keyfile FILE",
// " --passfile FILE", " --master-command CMD", the --pkcs11-* options (shell-quoted), or ""
// (the passphrase is asked on the terminal).
std::string KeyOptionHint(const Args& args);
// "envelopectl WORDS KEY-OPTION CIPHERDIR": a command line to suggest in a message.
std::string SuggestCommand(const Args& args, const std::string& words,
                           const std::filesystem::path& cipher_dir);

// Exactly `n` positional words after the subcommand words; throws Error(kUsage) otherwise.
void ExpectArgs(const Args& args, size_t words_used, size_t n, const char* usage);

// Each subcommand: returns the process exit code, throws Error for failures.
int RunInit(const Args& args);
int RunInspect(const Args& args);
int RunKeys(const Args& args);
int RunRewrap(const Args& args);
int RunVerify(const Args& args);
int RunAudit(const Args& args);
int RunDecrypt(const Args& args);
int RunLs(const Args& args);
int RunQuiesce(const Args& args);

}  // namespace envelopefs::cli
