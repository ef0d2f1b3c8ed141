// The envelopectl command line — see cli.h.
#include "cli.h"

#include <getopt.h>

#include <charconv>
#include <cstring>
#include <vector>

#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"

namespace envelopefs::cli {

namespace {

// Codes of envelopectl's own options (the key-source options have theirs, from
// kFirstKeySourceOption on: key_source_options.h).
enum Option {
  kVersion = 1000,
  kKekVersion,
  kShard,
  kJobs,
  kChunkSize,
  kPlaintextNames,
  kJson,
  kCheck,
  kQuiet,
  kShowVersion,
  kSameOwner,
  kRotateAfterDays,
  kAuditLog,
  kPrometheus,
  kTimeout,
  kSlot,
  kDestroyOldMaster,
};
static_assert(kDestroyOldMaster < kFirstKeySourceOption);

const struct option kOwnOptions[] = {
    {"version", optional_argument, nullptr, kVersion},
    {"kek-version", required_argument, nullptr, kKekVersion},
    {"shard", required_argument, nullptr, kShard},
    {"jobs", required_argument, nullptr, kJobs},
    {"chunk-size", required_argument, nullptr, kChunkSize},
    {"plaintext-names", no_argument, nullptr, kPlaintextNames},
    {"json", no_argument, nullptr, kJson},
    {"check", no_argument, nullptr, kCheck},
    {"quiet", no_argument, nullptr, kQuiet},
    {"output", required_argument, nullptr, 'o'},
    {"help", no_argument, nullptr, 'h'},
    {"program-version", no_argument, nullptr, kShowVersion},
    {"same-owner", no_argument, nullptr, kSameOwner},
    {"rotate-after-days", required_argument, nullptr, kRotateAfterDays},
    {"audit-log", required_argument, nullptr, kAuditLog},
    {"prometheus", required_argument, nullptr, kPrometheus},
    {"timeout", required_argument, nullptr, kTimeout},
    {"slot", required_argument, nullptr, kSlot},
    {"destroy-old-master", no_argument, nullptr, kDestroyOldMaster},
};

uint64_t ParseNumber(const char* text, const char* what) {
  uint64_t value = 0;
  const char* end = text + std::strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || ptr == text) {
    throw Error(ErrorKind::kUsage, std::string("invalid ") + what + " \"" + text + "\"");
  }
  return value;
}

// "16K", "1M", "65536" -> bytes.
uint32_t ParseSize(const char* text) {
  std::string s(text);
  uint64_t scale = 1;
  if (!s.empty() && (s.back() == 'K' || s.back() == 'k'))
    scale = 1024, s.pop_back();
  else if (!s.empty() && (s.back() == 'M' || s.back() == 'm'))
    scale = 1024 * 1024, s.pop_back();
  uint64_t n = ParseNumber(s.c_str(), "size") * scale;
  if (n > UINT32_MAX) throw Error(ErrorKind::kUsage, std::string("size too large: ") + text);
  return static_cast<uint32_t>(n);
}

Shard ParseShard(const char* text) {
  const char* slash = std::strchr(text, '/');
  if (slash == nullptr) throw Error(ErrorKind::kUsage, "--shard takes K/N, e.g. 1/4");
  std::string k(text, slash);
  uint64_t index = ParseNumber(k.c_str(), "shard");
  uint64_t count = ParseNumber(slash + 1, "shard count");
  if (count == 0 || index == 0 || index > count || count > 1000000) {
    throw Error(ErrorKind::kUsage, std::string("invalid --shard ") + text + ": need 1 <= K <= N");
  }
  return Shard{static_cast<uint32_t>(index - 1), static_cast<uint32_t>(count)};
}

uint32_t ParseKekVersion(const char* text, const char* option) {
  uint64_t v = ParseNumber(text, option);
  if (v == 0 || v > UINT32_MAX) throw Error(ErrorKind::kUsage, std::string("invalid ") + option);
  return static_cast<uint32_t>(v);
}

bool IsDecimal(const char* text) {
  return *text != '\0' && std::strspn(text, "0123456789") == std::strlen(text);
}

// --version is the program's version, except `--version N` (or --version=N) after the words
// `keys retire`: the old spelling of --kek-version N, kept as an alias.
void OnVersionOption(Args& args, int argc, char** argv) {
  const bool after_retire =
      args.words.size() >= 2 && args.words[0] == "keys" && args.words[1] == "retire";
  if (optarg != nullptr) {
    if (!after_retire) {
      throw Error(ErrorKind::kUsage,
                  "--version takes no value (the KEK version of keys retire is --kek-version N)");
    }
    args.kek_version = ParseKekVersion(optarg, "--version");
  } else if (after_retire && optind < argc && IsDecimal(argv[optind])) {
    args.kek_version = ParseKekVersion(argv[optind++], "--version");
  } else {
    args.show_version = true;
  }
}

}  // namespace

Args ParseArgs(int argc, char** argv) {
  Args args;
  const std::vector<option> long_options =
      LongOptionsWithKeySource(KeySourceOptionSet::kCurrentAndNewKey, kOwnOptions);
  // Everything after "--" is a command to run (quiesce), never options.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") != 0) continue;
    args.command.assign(argv + i + 1, argv + argc);
    args.has_command = true;
    argc = i;
    break;
  }
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "+o:hqV", long_options.data(), nullptr)) != -1 ||
         optind < argc) {
    if (c == -1) {  // a positional word: keep it and go on (options in any position)
      args.words.emplace_back(argv[optind++]);
      continue;
    }
    if (args.Apply(c, optarg != nullptr ? optarg : "")) continue;  // a key-source option
    switch (c) {
      case kVersion:
        OnVersionOption(args, argc, argv);
        break;
      case kKekVersion:
        args.kek_version = ParseKekVersion(optarg, "--kek-version");
        break;
      case kShard:
        args.shard = ParseShard(optarg);
        break;
      case kJobs: {
        uint64_t j = ParseNumber(optarg, "--jobs");
        if (j == 0 || j > 256) throw Error(ErrorKind::kUsage, "--jobs must be 1 to 256");
        args.jobs = static_cast<unsigned>(j);
        break;
      }
      case kChunkSize:
        args.chunk_size = ParseSize(optarg);
        break;
      case kPlaintextNames:
        args.plaintext_names = true;
        break;
      case kJson:
        args.json = true;
        break;
      case kCheck:
        args.check = true;
        break;
      case kQuiet:
      case 'q':
        args.quiet = true;
        break;
      case 'o':
        args.output = optarg;
        break;
      case 'h':
        args.help = true;
        break;
      case kSameOwner:
        args.same_owner = true;
        break;
      case kRotateAfterDays: {
        uint64_t d = ParseNumber(optarg, "--rotate-after-days");
        if (d < 1 || d > VolumePolicy::kMaxRotateAfterDays) {
          throw Error(ErrorKind::kUsage, "--rotate-after-days must be 1 to " +
                                             std::to_string(VolumePolicy::kMaxRotateAfterDays));
        }
        args.rotate_after_days = static_cast<uint32_t>(d);
        break;
      }
      case kAuditLog:
        if (std::strcmp(optarg, "on") == 0) {
          args.audit_log = true;
        } else if (std::strcmp(optarg, "off") == 0) {
          args.audit_log = false;
        } else {
          throw Error(ErrorKind::kUsage, "--audit-log takes on or off");
        }
        break;
      case kPrometheus:
        args.prometheus = optarg;
        break;
      case kTimeout: {
        const uint64_t t = ParseNumber(optarg, "--timeout");
        if (t == 0 || t > 7 * 24 * 3600) {
          throw Error(ErrorKind::kUsage, "--timeout must be 1 to 604800 seconds");
        }
        args.timeout_seconds = static_cast<uint32_t>(t);
        break;
      }
      case kSlot: {
        const uint64_t n = ParseNumber(optarg, "--slot");
        if (n < 1 || n > MasterSlot::kMaxSlots) {
          throw Error(ErrorKind::kUsage,
                      "--slot must be 1 to " + std::to_string(MasterSlot::kMaxSlots));
        }
        args.slot = static_cast<uint32_t>(n);
        break;
      }
      case kDestroyOldMaster:
        args.destroy_old_master = true;
        break;
      case kShowVersion:
      case 'V':
        args.show_version = true;
        break;
      case ':':
        throw Error(ErrorKind::kUsage,
                    std::string("option ") + argv[optind - 1] + " needs an argument");
      default:
        throw Error(ErrorKind::kUsage, std::string("unknown option ") + argv[optind - 1] +
                                           " (see envelopectl --help)");
    }
  }
  args.Validate();
  return args;
}

std::unique_ptr<Volume> OpenVolume(const Args& args, const std::filesystem::path& cipher_dir,
                                   bool log_unlock) {
  auto source = args.KeySource(/*confirm=*/false);
  return OpenVolumeAudited(cipher_dir, *source, nlohmann::json::object(), log_unlock);
}

std::string ShellWord(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-./=:,+@%") == std::string::npos) {
    return word;
  }
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string KeyOptionHint(const Args& args) {
  const KeySourceChoice& c = args.current;
  if (c.keyfile) return " --keyfile " + ShellWord(*c.keyfile);
  if (c.passfile) return " --passfile " + ShellWord(*c.passfile);
  if (c.command) return " --master-command " + ShellWord(*c.command);
  if (c.recovery_key) return " --recovery-key " + ShellWord(*c.recovery_key);
  if (c.HasPkcs11()) {
    return " --pkcs11-module " + ShellWord(c.pkcs11_module.value_or("")) + " --pkcs11-token " +
           ShellWord(c.pkcs11_token.value_or("")) + " --pkcs11-key " +
           ShellWord(c.pkcs11_key.value_or("")) +
           (c.pin_file ? " --pin-file " + ShellWord(*c.pin_file) : std::string());
  }
  if (c.HasKmip()) {
    return " --kmip-server " + ShellWord(c.kmip_server.value_or("")) +
           (c.kmip_key_id ? " --kmip-key-id " + ShellWord(*c.kmip_key_id) : std::string()) +
           " --tls-cert " + ShellWord(c.tls_cert.value_or("")) + " --tls-key " +
           ShellWord(c.tls_key.value_or("")) + " --tls-ca " + ShellWord(c.tls_ca.value_or(""));
  }
  return "";
}

std::string SuggestCommand(const Args& args, const std::string& words,
                           const std::filesystem::path& cipher_dir) {
  return "envelopectl " + words + KeyOptionHint(args) + " " + ShellWord(cipher_dir.string());
}

void ExpectArgs(const Args& args, size_t words_used, size_t n, const char* usage) {
  if (args.words.size() != words_used + n) {
    throw Error(ErrorKind::kUsage, std::string("usage: envelopectl ") + usage);
  }
}

}  // namespace envelopefs::cli
