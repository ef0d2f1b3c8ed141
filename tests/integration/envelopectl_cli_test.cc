// Tests of envelopectl's command-line conventions, run as a separate process: --version and
// --kek-version, per-command --help, "-" for stdin and stdout, the bash completion (sourced in
// bash, and installed by cmake --install), the wording of messages (inspect of a path that is
// not a cipher file, an edited config, an empty keyring, hints that carry the key option, the
// next step after init) and the progress bars of rewrap and decrypt (drawn on a pseudo-terminal
// made by script(1)).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "envelopectl_fixture.h"

namespace envelopefs::testing {
namespace {

// --- --version and --kek-version -------------------------------------------------------------

TEST(EnvelopectlCli, VersionPrintsTheVersionAndKeysRetireTakesKekVersion) {
  for (const char* option : {"--version", "-V"}) {
    CommandResult r = RunCommand(kCtl + " " + option);
    EXPECT_EQ(0, r.exit_code) << r.output;
    EXPECT_EQ(std::string("envelopectl ") + ENVELOPEFS_VERSION + "\n", r.output);
  }
  // --version=N outside keys retire is a usage error, not a silent version print.
  EXPECT_EQ(2, RunCommand(kCtl + " --version=2").exit_code);

  OfflineVolume v;
  v.Write("a", "alpha");
  const std::string dir = Quote(v.cipher());
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + dir)).exit_code);
  }
  ASSERT_EQ(0, RunCommand(v.Ctl("rewrap " + dir)).exit_code);
  CommandResult missing = RunCommand(v.Ctl("keys retire " + dir));
  EXPECT_EQ(2, missing.exit_code);
  EXPECT_TRUE(Contains(missing.output, "--kek-version N")) << missing.output;
  CommandResult retire = RunCommand(v.Ctl("keys retire --kek-version 1 " + dir));
  EXPECT_EQ(0, retire.exit_code) << retire.output;
  EXPECT_TRUE(Contains(retire.output, "KEK version 1 retired")) << retire.output;
  // The old spelling, after `keys retire`, in either position.
  CommandResult alias = RunCommand(v.Ctl("keys retire " + dir + " --version 2"));
  EXPECT_EQ(0, alias.exit_code) << alias.output;
  EXPECT_TRUE(Contains(alias.output, "KEK version 2 retired")) << alias.output;
  json keys = json::parse(RunCommand(v.Ctl("keys list --json " + dir)).output);
  EXPECT_EQ("retired", keys["keys"][0]["state"]);
  EXPECT_EQ("retired", keys["keys"][1]["state"]);
  EXPECT_EQ("active", keys["keys"][2]["state"]);
  // Without a number, --version is the program's version even after keys retire.
  EXPECT_TRUE(Contains(RunCommand(v.Ctl("keys retire " + dir + " --version")).output,
                       std::string("envelopectl ") + ENVELOPEFS_VERSION));
}

// --- --help ----------------------------------------------------------------------------------

TEST(EnvelopectlCli, EachCommandHasItsOwnHelp) {
  CommandResult overview = RunCommand(kCtl + " --help");
  EXPECT_EQ(0, overview.exit_code);
  for (const char* command : {"init", "inspect", "keys list", "keys retire", "rewrap", "verify",
                              "audit", "decrypt", "ls"}) {
    EXPECT_TRUE(Contains(overview.output, std::string("  ") + command + " ")) << command;
  }
  struct Case {
    std::string command, has, lacks;
  };
  const std::vector<Case> cases = {
      {"init", "--chunk-size", "--shard"},
      {"inspect", "--json", "--chunk-size"},
      {"keys", "keys retire [KEY] --kek-version N", "--shard"},
      {"keys rotate", "keys rotate", "keys list"},
      {"keys retire", "--kek-version N", "--rotate-after-days"},
      {"keys change-master", "--new-passfile", "--kek-version"},
      {"keys policy", "--audit-log on|off", "--new-keyfile"},
      {"rewrap", "--shard K/N", "--same-owner"},
      {"verify", "--jobs", "--shard"},
      {"audit", "--jobs", "--chunk-size"},
      {"decrypt", "--same-owner", "--shard"},
      {"ls", "--json", "--jobs"},
  };
  for (const Case& c : cases) {
    for (const std::string& line :
         {kCtl + " " + c.command + " --help", kCtl + " -h " + c.command}) {
      CommandResult r = RunCommand(line);
      EXPECT_EQ(0, r.exit_code) << line << "\n" << r.output;
      EXPECT_EQ(0u, r.output.find("usage: envelopectl " + c.command)) << line << "\n" << r.output;
      EXPECT_TRUE(Contains(r.output, c.has)) << line << "\n" << r.output;
      EXPECT_FALSE(Contains(r.output, c.lacks)) << line << "\n" << r.output;
      EXPECT_NE(r.output, overview.output);
    }
  }
  // Help for a command given with its arguments, and for an unknown command.
  EXPECT_EQ(0u, RunCommand(kCtl + " rewrap /nonexistent --help")
                    .output.find("usage: envelopectl "
                                 "rewrap"));
  CommandResult unknown = RunCommand(kCtl + " frobnicate --help");
  EXPECT_EQ(2, unknown.exit_code);
  EXPECT_EQ(1u, LineCount(unknown.output)) << unknown.output;
}

// --- "-": standard input and output ----------------------------------------------------------

TEST(EnvelopectlCli, DashReadsTheKeyFromStdinWhereTheHelpSaysSo) {
  TempDir t;
  const fs::path key = t.path() / "key", other = t.path() / "other", pass = t.path() / "pass";
  WriteSecretFile(key, RandomString(32, 1));
  WriteSecretFile(other, RandomString(32, 2));
  WriteSecretFile(pass, "correct horse\n");
  const std::string dir = Quote(t.path() / "cipher");
  const std::string env = "ENVELOPEFS_TEST_FAST_KDF=1 ";

  // --keyfile -: init and every later command read the key from stdin.
  ASSERT_EQ(0, RunCommand(kCtl + " init -q --keyfile - " + dir + " < " + Quote(key)).exit_code);
  EXPECT_EQ(0, RunCommand(kCtl + " keys list --keyfile - " + dir + " < " + Quote(key)).exit_code);
  EXPECT_EQ(3, RunCommand(kCtl + " keys list --keyfile - " + dir + " < " + Quote(other)).exit_code);
  EXPECT_EQ(0, RunCommand(kCtl + " verify --keyfile - " + dir + " < " + Quote(key)).exit_code);

  // --new-passfile -, with the current key from a file; then --passfile -.
  CommandResult change = RunCommand(env + kCtl + " keys change-master --keyfile " + Quote(key) +
                                    " --new-passfile - " + dir + " < " + Quote(pass));
  ASSERT_EQ(0, change.exit_code) << change.output;
  EXPECT_EQ(0, RunCommand(kCtl + " ls --passfile - " + dir + " < " + Quote(pass)).exit_code);
  EXPECT_EQ(3, RunCommand("echo wrong | " + kCtl + " ls --passfile - " + dir).exit_code);

  // Both keys from stdin cannot work: refused up front, nothing changed.
  const std::string keyring = ReadFile(t.path() / "cipher" / "envelopefs.keyring");
  CommandResult both = RunCommand(kCtl + " keys change-master --passfile - --new-keyfile - " + dir +
                                  " < " + Quote(pass));
  EXPECT_EQ(2, both.exit_code);
  EXPECT_EQ(1u, LineCount(both.output)) << both.output;
  EXPECT_TRUE(Contains(both.output, "stdin")) << both.output;
  EXPECT_EQ(keyring, ReadFile(t.path() / "cipher" / "envelopefs.keyring"));

  // decrypt -o -: the plaintext on standard output.
  OfflineVolume v;
  const fs::path cipher = v.Write("dir/a", "the plaintext\n");
  CommandResult out = RunCommand(kCtl + " decrypt -o - --keyfile - " + Quote(cipher) + " < " +
                                 Quote(v.keyfile()) + " 2>/dev/null");
  EXPECT_EQ(0, out.exit_code);
  EXPECT_EQ("the plaintext\n", out.output);
}

// The key-source options are the daemon's (key_source_options.h): both spellings work, and bad
// ones are refused with one line, the same as envelopefs's, before anything is read.
TEST(EnvelopectlCli, KeyOptionsAreSpelledAndCheckedAsForTheDaemon) {
  OfflineVolume v;
  const std::string key = Quote(v.keyfile()), dir = Quote(v.cipher());
  for (const std::string& option : {"--keyfile " + key, "--keyfile=" + key}) {
    CommandResult r = RunCommand(kCtl + " keys list " + option + " " + dir);
    EXPECT_EQ(0, r.exit_code) << option << ": " << r.output;
  }
  const std::pair<std::string, std::string> refused[] = {
      {"--keyfile=", "envelopectl: option --keyfile needs a file name"},
      {"--keyfile=" + key + " --passfile " + key,
       "envelopectl: --keyfile and --passfile are mutually exclusive"},
      {"--new-keyfile " + key + " --new-passfile=" + key,
       "envelopectl: --new-keyfile and --new-passfile are mutually exclusive"},
      // The command and PKCS#11 options (master_sources_test.cc runs them for real).
      {"--master-command=", "envelopectl: option --master-command needs a command"},
      {"--new-master-command ''", "envelopectl: option --new-master-command needs a command"},
      {"--pkcs11-module=", "envelopectl: option --pkcs11-module needs a path"},
      {"--new-pkcs11-module=", "envelopectl: option --new-pkcs11-module needs a path"},
      {"--pkcs11-token=", "envelopectl: option --pkcs11-token needs a label"},
      {"--new-pkcs11-key=" + std::string(33, 'k'),
       "envelopectl: option --new-pkcs11-key: a PKCS#11 label is 1 to 32 printable ASCII "
       "characters without quotes or backslashes"},
      {"--pin-file=", "envelopectl: option --pin-file needs a file name"},
      {"--new-pin-file=", "envelopectl: option --new-pin-file needs a file name"},
      {"--keyfile " + key + " --master-command true",
       "envelopectl: --keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and "
       "--recovery-key are "
       "mutually exclusive"},
      {"--passfile " + key + " --pkcs11-module m.so --pkcs11-token t --pkcs11-key k",
       "envelopectl: --keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and "
       "--recovery-key are "
       "mutually exclusive"},
      {"--new-master-command true --new-keyfile " + key,
       "envelopectl: --new-keyfile, --new-passfile, --new-master-command, --new-pkcs11-*, "
       "--new-kmip-* and --new-recovery-key are mutually exclusive"},
      {"--pkcs11-module m.so --pkcs11-token t",
       "envelopectl: a PKCS#11 master key needs --pkcs11-module PATH, --pkcs11-token LABEL and "
       "--pkcs11-key LABEL"},
      {"--keyfile " + key + " --pin-file " + key,
       "envelopectl: --keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and "
       "--recovery-key are "
       "mutually exclusive"},
      {"--new-pkcs11-key k",
       "envelopectl: a PKCS#11 master key needs --new-pkcs11-module PATH, --new-pkcs11-token "
       "LABEL and --new-pkcs11-key LABEL"},
      {"--keyfile " + key + " --pkcs11-create-key",
       "envelopectl: --pkcs11-create-key needs the --pkcs11-* (init) or --new-pkcs11-* (keys "
       "change-master) options"},
      // The KMIP options (kmip_source_test.cc runs them against PyKMIP).
      {"--kmip-server=", "envelopectl: option --kmip-server needs HOST:PORT"},
      {"--kmip-server kms",
       "envelopectl: --kmip-server must be HOST:PORT or [IPv6]:PORT, not 'kms'"},
      {"--new-kmip-server kms:0",
       "envelopectl: --new-kmip-server must be HOST:PORT or [IPv6]:PORT, not 'kms:0'"},
      {"--kmip-key-id=", "envelopectl: option --kmip-key-id needs a key id"},
      {"--new-kmip-key-id " + std::string(65, '1'),
       "envelopectl: option --new-kmip-key-id: a KMIP key id is 1 to 64 printable ASCII "
       "characters without quotes or backslashes"},
      {"--tls-cert=", "envelopectl: option --tls-cert needs a file name"},
      {"--new-tls-ca=", "envelopectl: option --new-tls-ca needs a file name"},
      {"--kmip-server kms:5696 --tls-cert c",
       "envelopectl: a KMIP master key needs --kmip-server HOST:PORT, --tls-cert FILE, --tls-key "
       "FILE and --tls-ca FILE"},
      {"--keyfile " + key + " --tls-ca c",
       "envelopectl: --keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and "
       "--recovery-key are "
       "mutually exclusive"},
      {"--keyfile " + key + " --kmip-create-key",
       "envelopectl: --kmip-create-key needs the --kmip-* (init) or --new-kmip-* (keys "
       "change-master) options"},
      {"--kmip-server k:1 --tls-cert c --tls-key k --tls-ca a --kmip-key-id 7 --kmip-create-key",
       "envelopectl: --kmip-create-key creates the key: give it without --kmip-key-id"},
      {"--pkcs11-module m.so --pkcs11-token t --pkcs11-key k --pin-file - --new-keyfile -",
       "envelopectl: only one of the current and the new key can be read from stdin (\"-\"); "
       "give the other as a file"},
  };
  for (const auto& [options, message] : refused) {
    CommandResult r = RunCommand(kCtl + " keys list " + options + " " + dir);
    EXPECT_EQ(2, r.exit_code) << options;
    EXPECT_EQ(message + "\n", r.output) << options;
  }
}

// --- bash completion -------------------------------------------------------------------------

// What the completion function offers (sorted) for the command line `line` (the last word is the
// one being completed; a trailing space starts a new one), run in `cwd`.
std::vector<std::string> Complete(const std::string& script, const std::string& line,
                                  const fs::path& cwd) {
  const std::string program =
      "source " + Quote(script) +
      " || exit 9; read -ra COMP_WORDS <<< \"$1\"; [[ $1 == *' ' ]] && COMP_WORDS+=(''); "
      "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
      "[[ $(complete -p envelopectl) == *_envelopectl* ]] || exit 8; "
      "_envelopectl; printf '%s\\n' \"${COMPREPLY[@]}\"";
  CommandResult r = RunCommand("cd " + Quote(cwd) + " && bash -c " + Quote(program) + " _ " +
                               Quote(line) + " 2>&1");
  EXPECT_EQ(0, r.exit_code) << r.output;
  std::vector<std::string> words;
  for (size_t at = 0; at < r.output.size();) {
    size_t end = r.output.find('\n', at);
    if (end > at) words.push_back(r.output.substr(at, end - at));
    at = end + 1;
  }
  std::sort(words.begin(), words.end());  // compgen -d/-f give directory order
  return words;
}

using Words = std::vector<std::string>;

TEST(EnvelopectlCli, BashCompletionOffersCommandsOptionsAndDirectories) {
  TempDir t;
  fs::create_directories(t.path() / "cipher-a");
  fs::create_directories(t.path() / "cipher-b");
  WriteFile(t.path() / "cipher-file", "x");
  const std::string script = ENVELOPECTL_COMPLETION;
  EXPECT_EQ(Words({"keys"}), Complete(script, "envelopectl ke", t.path()));
  EXPECT_EQ(Words({"remove-master", "retire", "rotate"}),
            Complete(script, "envelopectl keys r", t.path()));
  EXPECT_EQ(Words({"retire"}), Complete(script, "envelopectl --keyfile k keys ret", t.path()));
  EXPECT_EQ(Words({"--shard"}), Complete(script, "envelopectl rewrap --sh", t.path()));
  EXPECT_EQ(Words({"--kek-version"}), Complete(script, "envelopectl keys retire --kek", t.path()));
  EXPECT_EQ(Words({"--destroy-old-master"}),
            Complete(script, "envelopectl keys retire --dest", t.path()));
  EXPECT_EQ(Words({"add-master"}), Complete(script, "envelopectl keys add", t.path()));
  EXPECT_EQ(Words({"--new-recovery-key"}),
            Complete(script, "envelopectl keys add-master --new-rec", t.path()));
  EXPECT_EQ(Words({"off", "on"}),
            Complete(script, "envelopectl keys policy --audit-log ", t.path()));
  // A cipher dir: directories only; inspect and decrypt also take files.
  EXPECT_EQ(Words({"cipher-a", "cipher-b"}), Complete(script, "envelopectl verify ciph", t.path()));
  EXPECT_EQ(Words({"cipher-a", "cipher-b"}),
            Complete(script, "envelopectl audit --keyfile k ciph", t.path()));
  Words files = Complete(script, "envelopectl inspect cipher-", t.path());
  EXPECT_EQ(3u, files.size());
  EXPECT_EQ(Words({"cipher-file"}),
            Complete(script, "envelopectl ls --keyfile cipher-f", t.path()));
}

TEST(EnvelopectlCli, CmakeInstallPutsTheCompletionWhereBashCompletionLoadsIt) {
  TempDir t;
  CommandResult r = RunCommand(std::string(ENVELOPEFS_CMAKE_COMMAND) + " --install " +
                                   Quote(ENVELOPEFS_BUILD_DIR) + " --prefix " + Quote(t.path()),
                               120);
  ASSERT_EQ(0, r.exit_code) << r.output;
  const fs::path installed = t.path() / "share/bash-completion/completions/envelopectl";
  ASSERT_TRUE(fs::is_regular_file(installed)) << r.output;
  EXPECT_TRUE(fs::is_regular_file(t.path() / "bin/envelopectl"));
  EXPECT_EQ(Words({"decrypt"}), Complete(installed.string(), "envelopectl dec", t.path()));
}

}  // namespace
}  // namespace envelopefs::testing
