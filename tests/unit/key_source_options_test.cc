// Unit tests of the key-source options shared by envelopefs and envelopectl: the option table,
// every spelling through getopt_long (--keyfile FILE, --keyfile=FILE) and through a -o mount
// option list (keyfile=FILE), the checks of the combination and their messages, and the key
// sources the options name.
#include "envelopefs/key_source_options.h"

#include <getopt.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "envelopefs/error.h"
#include "mount_options.h"

namespace envelopefs {
namespace {

// Parses `args` (after a program name) with getopt_long over the options of `set`, as the
// programs do; returns the options, or throws Error(kUsage). An option getopt does not know
// is reported as "unknown".
KeySourceOptions Parse(KeySourceOptionSet set, std::vector<std::string> args) {
  args.insert(args.begin(), "program");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::vector<option> long_options = LongOptionsWithKeySource(set, {});
  KeySourceOptions out;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(static_cast<int>(args.size()), argv.data(), ":", long_options.data(),
                          nullptr)) != -1) {
    if (!out.Apply(c, optarg != nullptr ? optarg : "")) {
      throw Error(ErrorKind::kUsage, c == ':' ? "needs an argument" : "unknown");
    }
  }
  out.Validate();
  return out;
}

// The message of the Error(kUsage) that `f` throws, or "" if it throws none.
template <typename F>
std::string UsageError(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind()) << e.what();
    return e.what();
  }
  return "";
}

TEST(KeySourceOptions, TheTableNamesEachOptionOnceAndTheDaemonGetsNoNewKeyOptions) {
  std::set<std::string> current, all;
  for (const KeySourceOptionSpec& s : KeySourceOptionTable(KeySourceOptionSet::kCurrentKey)) {
    current.insert(s.name);
  }
  std::set<int> codes;
  for (const KeySourceOptionSpec& s : KeySourceOptionTable(KeySourceOptionSet::kCurrentAndNewKey)) {
    all.insert(s.name);
    EXPECT_GE(s.code, kFirstKeySourceOption) << s.name;
    EXPECT_TRUE(codes.insert(s.code).second) << s.name;
    EXPECT_EQ(std::string(s.name) != "insecure-keyfile" &&
                  std::string(s.name) != "pkcs11-create-key" &&
                  std::string(s.name) != "kmip-create-key" &&
                  std::string(s.name) != "new-recovery-key",
              (s.value != nullptr))
        << s.name;
  }
  EXPECT_EQ((std::set<std::string>{"keyfile", "passfile", "insecure-keyfile", "master-command",
                                   "pkcs11-module", "pkcs11-token", "pkcs11-key", "pin-file",
                                   "kmip-server", "kmip-key-id", "tls-cert", "tls-key", "tls-ca",
                                   "recovery-key"}),
            current);
  EXPECT_EQ((std::set<std::string>{
                "keyfile",          "passfile",        "insecure-keyfile",   "master-command",
                "pkcs11-module",    "pkcs11-token",    "pkcs11-key",         "pin-file",
                "new-keyfile",      "new-passfile",    "new-master-command", "new-pkcs11-module",
                "new-pkcs11-token", "new-pkcs11-key",  "new-pin-file",       "pkcs11-create-key",
                "kmip-server",      "kmip-key-id",     "tls-cert",           "tls-key",
                "tls-ca",           "new-kmip-server", "new-kmip-key-id",    "new-tls-cert",
                "new-tls-key",      "new-tls-ca",      "kmip-create-key",    "recovery-key",
                "new-recovery-key"}),
            all);

  // A program's getopt_long table: these, then its own options, then the terminator.
  const option own[] = {{"ro", no_argument, nullptr, 1000}};
  const std::vector<option> table = LongOptionsWithKeySource(KeySourceOptionSet::kCurrentKey, own);
  ASSERT_EQ(16u, table.size());
  EXPECT_STREQ("keyfile", table[0].name);
  EXPECT_EQ(required_argument, table[0].has_arg);
  EXPECT_EQ(no_argument, table[2].has_arg);
  EXPECT_STREQ("ro", table[14].name);
  EXPECT_EQ(nullptr, table[15].name);
}

TEST(KeySourceOptions, EverySpellingOnTheCommandLine) {
  const auto set = KeySourceOptionSet::kCurrentAndNewKey;
  EXPECT_EQ("k", Parse(set, {"--keyfile", "k"}).current.keyfile);
  EXPECT_EQ("k", Parse(set, {"--keyfile=k"}).current.keyfile);
  EXPECT_EQ("-", Parse(set, {"--passfile", "-"}).current.passfile);
  EXPECT_EQ("p", Parse(set, {"--passfile=p"}).current.passfile);
  EXPECT_EQ("n", Parse(set, {"--new-keyfile=n"}).next.keyfile);
  EXPECT_EQ("n", Parse(set, {"--new-passfile", "n"}).next.passfile);
  EXPECT_EQ("b", Parse(set, {"--keyfile", "a", "--keyfile=b"}).current.keyfile)
      << "the last one wins";

  KeySourceOptions o = Parse(set, {"--insecure-keyfile", "--keyfile", "k"});
  EXPECT_TRUE(o.insecure_keyfile);
  EXPECT_TRUE(o.HasKey());
  EXPECT_FALSE(o.HasNewKey());
  EXPECT_FALSE(o.current.passfile);
  EXPECT_FALSE(Parse(set, {}).HasKey());
  EXPECT_FALSE(Parse(set, {}).insecure_keyfile);
}

TEST(KeySourceOptions, EmptyOrMissingFileNamesAndUnknownOptionsAreRefused) {
  const auto set = KeySourceOptionSet::kCurrentAndNewKey;
  EXPECT_EQ("option --keyfile needs a file name", UsageError([&] { Parse(set, {"--keyfile="}); }));
  EXPECT_EQ("option --new-passfile needs a file name", UsageError([&] {
              Parse(set, {"--new-passfile", ""});
            }));
  EXPECT_EQ("needs an argument", UsageError([&] { Parse(set, {"--passfile"}); }));
  EXPECT_EQ("unknown", UsageError([&] { Parse(set, {"--insecure-keyfile=yes"}); }));
  // envelopefs takes no new key.
  EXPECT_EQ("unknown",
            UsageError([&] { Parse(KeySourceOptionSet::kCurrentKey, {"--new-keyfile=n"}); }));

  KeySourceOptions o;
  EXPECT_FALSE(o.Apply('f', "x")) << "not a key-source option";
  EXPECT_FALSE(o.Apply(kFirstKeySourceOption - 1, "x"));
  EXPECT_FALSE(o.HasKey());
}

TEST(KeySourceOptions, TheCombinationIsCheckedWithOneLine) {
  const auto set = KeySourceOptionSet::kCurrentAndNewKey;
  EXPECT_EQ("--keyfile and --passfile are mutually exclusive", UsageError([&] {
              Parse(set, {"--keyfile=k", "--passfile", "p"});
            }));
  EXPECT_EQ("--new-keyfile and --new-passfile are mutually exclusive", UsageError([&] {
              Parse(set, {"--new-keyfile=k", "--new-passfile=p"});
            }));
  const std::string one_stdin =
      "only one of the current and the new key can be read from stdin (\"-\"); give the other "
      "as a file";
  EXPECT_EQ(one_stdin, UsageError([&] { Parse(set, {"--keyfile=-", "--new-passfile=-"}); }));
  EXPECT_EQ(one_stdin, UsageError([&] { Parse(set, {"--passfile=-", "--new-keyfile", "-"}); }));
  EXPECT_EQ("", UsageError([&] { Parse(set, {"--passfile=-", "--new-keyfile=n"}); }));
  EXPECT_EQ("", UsageError([&] { Parse(set, {"--keyfile=k", "--new-keyfile=-"}); }));
  EXPECT_EQ(one_stdin, UsageError([&] {
              Parse(set, {"--pkcs11-module=m", "--pkcs11-token=t", "--pkcs11-key=k", "--pin-file=-",
                          "--new-keyfile=-"});
            }));
}

TEST(KeySourceOptions, CommandAndPkcs11OptionsAreCheckedWithOneLine) {
  const auto set = KeySourceOptionSet::kCurrentAndNewKey;
  KeySourceOptions o = Parse(
      set, {"--master-command", "gpg -d k.gpg", "--new-pkcs11-module=m", "--new-pkcs11-token=T",
            "--new-pkcs11-key=K", "--new-pin-file=p", "--pkcs11-create-key"});
  EXPECT_EQ("gpg -d k.gpg", o.current.command);
  EXPECT_EQ("m", o.next.pkcs11_module);
  EXPECT_EQ("T", o.next.pkcs11_token);
  EXPECT_EQ("K", o.next.pkcs11_key);
  EXPECT_EQ("p", o.next.pin_file);
  EXPECT_TRUE(o.pkcs11_create_key);
  EXPECT_STREQ("command", o.current.KindName());
  EXPECT_STREQ("pkcs11", o.next.KindName());
  EXPECT_EQ(MasterKeyKind::kCommand, o.KeySource(false)->kind());
  EXPECT_EQ(MasterKeyKind::kPkcs11, o.NewKeySource()->kind());

  EXPECT_EQ("option --master-command needs a command",
            UsageError([&] { Parse(set, {"--master-command="}); }));
  EXPECT_EQ("option --pkcs11-module needs a path",
            UsageError([&] { Parse(set, {"--pkcs11-module="}); }));
  EXPECT_EQ("option --new-pkcs11-token needs a label",
            UsageError([&] { Parse(set, {"--new-pkcs11-token="}); }));
  EXPECT_EQ(
      "option --pkcs11-key: a PKCS#11 label is 1 to 32 printable ASCII characters without quotes "
      "or backslashes",
      UsageError([&] { Parse(set, {"--pkcs11-key=a\"b"}); }));
  EXPECT_NE("", UsageError([&] { Parse(set, {"--pkcs11-token=" + std::string(33, 'x')}); }));
  EXPECT_EQ(
      "--keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and --recovery-key are mutually exclusive",
      UsageError([&] {
        Parse(set, {"--keyfile=k", "--master-command=c"});
      }));
  EXPECT_EQ(
      "--new-keyfile, --new-passfile, --new-master-command, --new-pkcs11-*, --new-kmip-* and --new-recovery-key are "
      "mutually exclusive",
      UsageError([&] {
        Parse(set, {"--new-pkcs11-key=k", "--new-master-command=c"});
      }));
  EXPECT_EQ(
      "a PKCS#11 master key needs --pkcs11-module PATH, --pkcs11-token LABEL and --pkcs11-key "
      "LABEL",
      UsageError([&] {
        Parse(set, {"--pkcs11-module=m", "--pkcs11-key=k"});
      }));
  EXPECT_EQ(
      "--pkcs11-create-key needs the --pkcs11-* (init) or --new-pkcs11-* (keys change-master) "
      "options",
      UsageError([&] {
        Parse(set, {"--keyfile=k", "--pkcs11-create-key"});
      }));
  // envelopefs creates no key.
  EXPECT_EQ("unknown",
            UsageError([&] { Parse(KeySourceOptionSet::kCurrentKey, {"--pkcs11-create-key"}); }));
}

TEST(KeySourceOptions, KmipOptionsAreCheckedWithOneLine) {
  const auto set = KeySourceOptionSet::kCurrentAndNewKey;
  KeySourceOptions o =
      Parse(set, {"--kmip-server=kms.example.org:5696", "--tls-cert=c", "--tls-key=k", "--tls-ca=a",
                  "--new-kmip-server", "[::1]:5696", "--new-tls-cert=c2", "--new-tls-key=k2",
                  "--new-tls-ca=a2", "--kmip-create-key"});
  EXPECT_EQ("kms.example.org:5696", o.current.kmip_server);
  EXPECT_EQ("a2", o.next.tls_ca);
  EXPECT_FALSE(o.current.kmip_key_id);
  EXPECT_TRUE(o.kmip_create_key);
  EXPECT_STREQ("kmip", o.current.KindName());
  EXPECT_EQ(MasterKeyKind::kKmip, o.KeySource(false)->kind());
  EXPECT_EQ(MasterKeyKind::kKmip, o.NewKeySource()->kind());

  EXPECT_EQ("option --kmip-server needs HOST:PORT",
            UsageError([&] { Parse(set, {"--kmip-server="}); }));
  EXPECT_EQ("--kmip-server must be HOST:PORT or [IPv6]:PORT, not 'kms:99999'",
            UsageError([&] { Parse(set, {"--kmip-server=kms:99999"}); }));
  EXPECT_EQ(
      "option --kmip-key-id: a KMIP key id is 1 to 64 printable ASCII characters without quotes "
      "or backslashes",
      UsageError([&] { Parse(set, {"--kmip-key-id=a\\b"}); }));
  EXPECT_EQ(
      "a KMIP master key needs --new-kmip-server HOST:PORT, --new-tls-cert FILE, --new-tls-key "
      "FILE and --new-tls-ca FILE",
      UsageError([&] {
        Parse(set, {"--new-kmip-server=k:1", "--new-tls-ca=a"});
      }));
  EXPECT_EQ(
      "--keyfile, --passfile, --master-command, --pkcs11-*, --kmip-* and --recovery-key are mutually exclusive",
      UsageError([&] {
        Parse(set, {"--master-command=c", "--tls-cert=c"});
      }));
  EXPECT_EQ("--kmip-create-key creates the key: give it without --kmip-key-id", UsageError([&] {
              Parse(set, {"--kmip-server=k:1", "--tls-cert=c", "--tls-key=k", "--tls-ca=a",
                          "--kmip-key-id=7", "--kmip-create-key"});
            }));
  EXPECT_EQ("unknown",
            UsageError([&] { Parse(KeySourceOptionSet::kCurrentKey, {"--kmip-create-key"}); }));
}

// The daemon's -o list (fstab, mount.fuse3) takes the same options, '_' or '-' alike.
TEST(KeySourceOptions, TheSameOptionsInAMountOptionList) {
  std::vector<DaemonOption> daemon_options;
  for (const KeySourceOptionSpec& s : KeySourceOptionTable(KeySourceOptionSet::kCurrentKey)) {
    daemon_options.push_back({s.name, (s.value != nullptr), s.code});
  }
  KeySourceOptions o;
  auto apply = [&o](int code, const std::string& value) { EXPECT_TRUE(o.Apply(code, value)); };
  EXPECT_EQ(
      std::vector<std::string>{"allow_other"},
      SplitMountOptions("keyfile=/etc/k,insecure_keyfile,allow_other", daemon_options, apply));
  EXPECT_EQ("/etc/k", o.current.keyfile);
  EXPECT_TRUE(o.insecure_keyfile);
  o.Validate();

  SplitMountOptions("passfile=/etc/p", daemon_options, apply);
  EXPECT_EQ("--keyfile and --passfile are mutually exclusive", UsageError([&] { o.Validate(); }));
  EXPECT_NE("", UsageError([&] { SplitMountOptions("new_keyfile=n", daemon_options, apply); }));

  KeySourceOptions p;
  auto apply_p = [&p](int code, const std::string& value) { EXPECT_TRUE(p.Apply(code, value)); };
  SplitMountOptions("pkcs11_module=/m.so,pkcs11-token=T,pkcs11_key=K,pin_file=/p", daemon_options,
                    apply_p);
  EXPECT_EQ("/m.so", p.current.pkcs11_module);
  EXPECT_EQ("T", p.current.pkcs11_token);
  EXPECT_EQ("K", p.current.pkcs11_key);
  EXPECT_EQ("/p", p.current.pin_file);
  p.Validate();
  SplitMountOptions("master_command=cat /k", daemon_options, apply_p);
  EXPECT_EQ("cat /k", p.current.command);
  EXPECT_NE("", UsageError([&] { p.Validate(); }));
}

TEST(KeySourceOptions, TheOptionsNameTheirKeySources) {
  KeySourceOptions o;
  o.current.keyfile = "/nonexistent/key";
  o.next.passfile = "/nonexistent/pass";
  EXPECT_EQ(MasterKeyKind::kKeyFile, o.KeySource(false)->kind());
  EXPECT_EQ(MasterKeyKind::kPassphrase, o.NewKeySource()->kind());
  o.current.keyfile.reset();
  o.current.passfile = "/nonexistent/pass";
  o.next.passfile.reset();
  o.next.keyfile = "/nonexistent/key";
  EXPECT_EQ(MasterKeyKind::kPassphrase, o.KeySource(true)->kind());
  EXPECT_EQ(MasterKeyKind::kKeyFile, o.NewKeySource()->kind());
  // Without a file: the passphrase from the terminal.
  EXPECT_EQ(MasterKeyKind::kPassphrase, KeySourceOptions().KeySource(false)->kind());
}

}  // namespace
}  // namespace envelopefs
