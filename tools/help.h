// The help texts of envelopectl: the overview (`envelopectl --help`) and each command's usage
// and options (`envelopectl COMMAND --help`, `envelopectl keys SUBCOMMAND --help`). Constant
// data only; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace envelopefs::cli {

// The overview: every command's synopsis and the options all of them take.
const char* OverviewHelp();

// The help for the command named by the first words of `words` ("keys", "keys rotate", ...);
// nullptr if there is no such command. "keys" alone gives every keys subcommand.
const char* CommandHelp(const std::vector<std::string>& words);

}  // namespace envelopefs::cli
