// The key-source options of envelopefs and envelopectl — see key_source_options.h.
#include "envelopefs/key_source_options.h"

#include <array>

#include "envelopefs/error.h"

namespace envelopefs {

namespace {

// The current key's options first: kCurrentKey is a prefix of kCurrentAndNewKey.
constexpr std::array<KeySourceOptionSpec, 5> kTable = {{
    {"keyfile", true, kKeyfileOption},
    {"passfile", true, kPassfileOption},
    {"insecure-keyfile", false, kInsecureKeyfileOption},
    {"new-keyfile", true, kNewKeyfileOption},
    {"new-passfile", true, kNewPassfileOption},
}};
constexpr size_t kCurrentKeyOptions = 3;

const KeySourceOptionSpec* Find(int code) {
  for (const KeySourceOptionSpec& spec : kTable) {
    if (spec.code == code) return &spec;
  }
  return nullptr;
}

bool IsStdin(const std::optional<std::string>& file) { return file && *file == "-"; }

std::unique_ptr<MasterKeySource> SourceOf(const std::optional<std::string>& keyfile,
                                          const std::optional<std::string>& passfile, bool confirm,
                                          bool insecure) {
  if (keyfile) return MakeKeyFileSource(*keyfile, insecure);
  if (passfile) return MakePassFileSource(*passfile, insecure);
  return MakePromptSource(confirm);
}

}  // namespace

std::span<const KeySourceOptionSpec> KeySourceOptionTable(KeySourceOptionSet set) {
  const std::span<const KeySourceOptionSpec> all(kTable);
  return set == KeySourceOptionSet::kCurrentKey ? all.first(kCurrentKeyOptions) : all;
}

std::vector<option> LongOptionsWithKeySource(KeySourceOptionSet set, std::span<const option> own) {
  std::vector<option> out;
  for (const KeySourceOptionSpec& spec : KeySourceOptionTable(set)) {
    out.push_back(
        {spec.name, spec.takes_value ? required_argument : no_argument, nullptr, spec.code});
  }
  out.insert(out.end(), own.begin(), own.end());
  out.push_back({nullptr, 0, nullptr, 0});
  return out;
}

bool KeySourceOptions::Apply(int code, const std::string& value) {
  const KeySourceOptionSpec* spec = Find(code);
  if (spec == nullptr) return false;
  if (spec->takes_value && value.empty()) {
    throw Error(ErrorKind::kUsage, std::string("option --") + spec->name + " needs a file name");
  }
  switch (code) {
    case kKeyfileOption:
      keyfile = value;
      break;
    case kPassfileOption:
      passfile = value;
      break;
    case kInsecureKeyfileOption:
      insecure_keyfile = true;
      break;
    case kNewKeyfileOption:
      new_keyfile = value;
      break;
    case kNewPassfileOption:
      new_passfile = value;
      break;
  }
  return true;
}

void KeySourceOptions::Validate() const {
  if (keyfile && passfile) {
    throw Error(ErrorKind::kUsage, "--keyfile and --passfile are mutually exclusive");
  }
  if (new_keyfile && new_passfile) {
    throw Error(ErrorKind::kUsage, "--new-keyfile and --new-passfile are mutually exclusive");
  }
  if ((IsStdin(keyfile) || IsStdin(passfile)) && (IsStdin(new_keyfile) || IsStdin(new_passfile))) {
    throw Error(ErrorKind::kUsage,
                "only one of the current and the new key can be read from stdin (\"-\"); give "
                "the other as a file");
  }
}

std::unique_ptr<MasterKeySource> KeySourceOptions::KeySource(bool confirm) const {
  return SourceOf(keyfile, passfile, confirm, insecure_keyfile);
}

std::unique_ptr<MasterKeySource> KeySourceOptions::NewKeySource() const {
  return SourceOf(new_keyfile, new_passfile, /*confirm=*/true, insecure_keyfile);
}

}  // namespace envelopefs
