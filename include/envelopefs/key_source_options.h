// KeySourceOptions — the command-line options that say where the master key comes from, in one
// place for envelopefs and envelopectl: the option table, applying an option (as getopt_long or
// a -o mount option list delivers it), the checks of the combination, and the MasterKeySource
// the options name.
//
//   --keyfile FILE       the master key: a file of 32 random bytes ("-": standard input)
//   --passfile FILE      the passphrase on FILE's first line ("-": standard input)
//   --insecure-keyfile   accept a key or passphrase file that group or others can read
//   --new-keyfile FILE   envelopectl only (keys change-master): the new master key
//   --new-passfile FILE  envelopectl only: the new passphrase
//
// Without --keyfile or --passfile the passphrase is asked on the terminal. The last of repeated
// options wins. Every program spells them alike: `--keyfile FILE`, `--keyfile=FILE` (and, for
// envelopefs, `-o keyfile=FILE`, see mount_options.h). Functions are stateless and thread-safe;
// a KeySourceOptions is a plain value, not synchronized.
#pragma once

#include <getopt.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/key_source.h"

namespace envelopefs {

// Which key-source options a program takes.
enum class KeySourceOptionSet {
  kCurrentKey,        // --keyfile, --passfile, --insecure-keyfile (envelopefs)
  kCurrentAndNewKey,  // and --new-keyfile, --new-passfile (envelopectl)
};

// The getopt_long codes of the key-source options. A program's own option codes stay below
// kFirstKeySourceOption.
inline constexpr int kFirstKeySourceOption = 0x4b00;
enum KeySourceOptionCode : int {
  kKeyfileOption = kFirstKeySourceOption,
  kPassfileOption,
  kInsecureKeyfileOption,
  kNewKeyfileOption,
  kNewPassfileOption,
};

struct KeySourceOptionSpec {
  const char* name;  // the long option's name, e.g. "keyfile"
  bool takes_value;  // --NAME FILE or --NAME=FILE; otherwise a flag
  int code;          // a KeySourceOptionCode
};

// The options of `set`, in the order of the programs' help.
std::span<const KeySourceOptionSpec> KeySourceOptionTable(KeySourceOptionSet set);

// A program's getopt_long table: the options of `set`, then the program's `own` options (whose
// codes stay below kFirstKeySourceOption), then the terminating all-zero entry.
std::vector<option> LongOptionsWithKeySource(KeySourceOptionSet set, std::span<const option> own);

// The key-source options as given on a command line.
struct KeySourceOptions {
  std::optional<std::string> keyfile, passfile;
  std::optional<std::string> new_keyfile, new_passfile;
  bool insecure_keyfile = false;

  // Records option `code` with its value (ignored for a flag). Returns false, changing nothing,
  // if `code` is not a KeySourceOptionCode. Throws Error(kUsage) for an empty file name.
  bool Apply(int code, const std::string& value);
  // Checks the combination once all options are in: one current key, one new key, and at most
  // one of them read from standard input. Throws Error(kUsage) with one line.
  void Validate() const;

  // True if --keyfile or --passfile was given (commands that work without a key never prompt).
  bool HasKey() const { return keyfile.has_value() || passfile.has_value(); }
  bool HasNewKey() const { return new_keyfile.has_value() || new_passfile.has_value(); }
  // The master key source: the key file, the passphrase file, or else the terminal (asking
  // twice when `confirm`, for a key being set).
  std::unique_ptr<MasterKeySource> KeySource(bool confirm) const;
  // The new master key source (--new-keyfile, --new-passfile, or else the terminal, asking
  // twice).
  std::unique_ptr<MasterKeySource> NewKeySource() const;
};

}  // namespace envelopefs
