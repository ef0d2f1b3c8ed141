// The help texts of envelopectl — see help.h.
#include "help.h"

namespace envelopefs::cli {

namespace {

// Shared option paragraphs, pasted into each command's text (string literal concatenation).
#define ENVELOPECTL_KEY_OPTIONS                                                             \
  "key options:\n"                                                                          \
  "  --keyfile FILE       the master key: a file of exactly 32 bytes (\"-\": stdin)\n"      \
  "  --passfile FILE      the passphrase on FILE's first line (\"-\": stdin)\n"             \
  "  --insecure-keyfile   accept a key, passphrase or PIN file that group or others can\n"  \
  "                       read\n"                                                           \
  "  --master-command CMD the master key is CMD's output: 32 bytes or 64 hex digits\n"      \
  "                       (run with sh -c, no terminal, 30 s timeout)\n"                    \
  "  --pkcs11-module PATH --pkcs11-token LABEL --pkcs11-key LABEL\n"                        \
  "                       the master key, encrypted by an AES key in a PKCS#11 token\n"     \
  "  --pin-file FILE      the token's PIN (first line; default: $ENVELOPEFS_PKCS11_PIN)\n"  \
  "  --kmip-server HOST:PORT --tls-cert FILE --tls-key FILE --tls-ca FILE\n"                \
  "  --kmip-key-id ID     the master key, encrypted by a KMIP server's AES key (mutual\n"   \
  "                       TLS; init --kmip-create-key prints the id of the key it makes)\n" \
  "  --recovery-key FILE  the volume's recovery key (its text; \"-\": stdin)\n"             \
  "  (without a key option the passphrase is asked on the terminal)\n"
#define ENVELOPECTL_COMMON_OPTIONS                            \
  "  -q, --quiet          no summary line, no progress bar\n" \
  "  -h, --help           this help\n"

constexpr char kOverview[] =
    "usage: envelopectl COMMAND [OPTIONS] ARGS\n"
    "\n"
    "commands:\n"
    "  init [KEY] [--chunk-size SIZE] [--plaintext-names] CIPHERDIR\n"
    "  inspect [KEY] [--json] FILE\n"
    "  keys list [KEY] [--json] [--check] [--prometheus FILE] CIPHERDIR\n"
    "  keys rotate [KEY] CIPHERDIR\n"
    "  keys retire [KEY] --kek-version N [--destroy-old-master] CIPHERDIR\n"
    "  keys change-master [KEY] NEWKEY CIPHERDIR\n"
    "  keys add-master [KEY] (NEWKEY | --new-recovery-key [-o FILE]) CIPHERDIR\n"
    "  keys remove-master [KEY] --slot N CIPHERDIR\n"
    "  keys destroy-old-master [KEY] CIPHERDIR\n"
    "  keys policy [KEY] [--rotate-after-days N] [--audit-log on|off] [--json] CIPHERDIR\n"
    "  rewrap [KEY] [--jobs N] [--shard K/N] CIPHERDIR\n"
    "  verify [KEY] [--json] [--jobs N] CIPHERDIR\n"
    "  audit [KEY] [--json] [--jobs N] [--prometheus FILE] CIPHERDIR\n"
    "  decrypt [KEY] CIPHERFILE [-o OUT]\n"
    "  decrypt [KEY] [--same-owner] [--jobs N] CIPHERDIR -o DIR\n"
    "  ls [KEY] [--json] CIPHERDIR\n"
    "  quiesce [--timeout SECONDS] CIPHERDIR -- COMMAND [ARGS...]\n"
    "\n"
    "KEY is --keyfile FILE, --passfile FILE (\"-\" reads stdin), --master-command CMD or\n"
    "--pkcs11-module PATH --pkcs11-token LABEL --pkcs11-key LABEL [--pin-file FILE] or\n"
    "--kmip-server HOST:PORT --tls-cert FILE --tls-key FILE --tls-ca FILE --kmip-key-id ID;\n"
    "without\n"
    "one the passphrase is asked on the terminal. NEWKEY is the same with --new- in front. A key "
    "or passphrase file that group or others can read is\n"
    "refused unless --insecure-keyfile is given. Options may come in any position.\n"
    "\n"
    "  envelopectl COMMAND --help   the options of one command\n"
    "  envelopectl --version        the version\n"
    "See envelopectl(1).\n";

constexpr char kInit[] =
    "usage: envelopectl init [KEY] [--chunk-size SIZE] [--plaintext-names]\n"
    "                        [--new-recovery-key [-o FILE]] CIPHERDIR\n"
    "\n"
    "Creates a volume in CIPHERDIR (missing or empty).\n"
    "\n"
    "options:\n"
    "  --chunk-size SIZE    4K, 8K, 16K (default), 32K, 64K, 128K, 256K, 512K or 1M\n"
    "  --plaintext-names    keep file names in the clear in the cipher dir\n"
    "  --pkcs11-create-key  with the --pkcs11-* key options: create the token's AES key\n"
    "                       (sensitive, not extractable) if it does not exist\n"
    "  --kmip-create-key    with the --kmip-* key options: create an AES-256 key on the KMIP\n"
    "                       server (instead of --kmip-key-id)\n"
    "  --new-recovery-key   also add a master slot for a recovery key, shown once (or\n"
    "                       written to -o FILE, mode 0600): keep it "
    "offline\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;

constexpr char kInspect[] =
    "usage: envelopectl inspect [KEY] [--json] FILE\n"
    "\n"
    "Shows the header of one cipher file (a file in the cipher dir, not in the mount); with a\n"
    "key, also whether it authenticates and its DEK fingerprint.\n"
    "\n"
    "options:\n"
    "  --json               machine-readable output\n" ENVELOPECTL_COMMON_OPTIONS
        ENVELOPECTL_KEY_OPTIONS;

#define ENVELOPECTL_KEYS_LIST                                                             \
  "usage: envelopectl keys list [KEY] [--json] [--check] [--prometheus FILE] CIPHERDIR\n" \
  "\n"                                                                                    \
  "Lists the KEK versions against the rotation policy (without a key: as stored, not\n"   \
  "authenticated).\n"                                                                     \
  "\n"                                                                                    \
  "options:\n"                                                                            \
  "  --check              exit 9 when the active KEK version is overdue, or the client\n" \
  "                       certificate (--tls-cert) expires within 30, 14 or 7 days\n"     \
  "  --prometheus FILE    also write node_exporter textfile metrics to FILE\n"            \
  "  --json               machine-readable output\n"
#define ENVELOPECTL_KEYS_ROTATE                               \
  "usage: envelopectl keys rotate [KEY] [--json] CIPHERDIR\n" \
  "\n"                                                        \
  "Makes a new KEK version active; then run rewrap to move existing files.\n"
#define ENVELOPECTL_KEYS_RETIRE                                                          \
  "usage: envelopectl keys retire [KEY] --kek-version N [--jobs N]\n"                    \
  "                               [--destroy-old-master] CIPHERDIR\n"                    \
  "\n"                                                                                   \
  "Destroys the key of a decrypt-only KEK version that no file uses any more.\n"         \
  "\n"                                                                                   \
  "options:\n"                                                                           \
  "  --kek-version N      the version to retire (--version N is accepted after\n"        \
  "                       `keys retire` as the old spelling)\n"                          \
  "  --jobs N             threads for the scan of the headers (default: one per CPU)\n"  \
  "  --destroy-old-master with a PKCS#11 or KMIP master key (the volume's only slot):\n" \
  "                       move the keyring to a new token or server key and destroy\n"   \
  "                       the old one, so no old copy of the keyring opens again\n"
#define ENVELOPECTL_KEYS_CHANGE_MASTER                                                       \
  "usage: envelopectl keys change-master [KEY] NEWKEY CIPHERDIR\n"                           \
  "\n"                                                                                       \
  "Replaces the master key of the slot KEY opens (a key file, a passphrase, a command, a\n"  \
  "PKCS#11 token or a KMIP server).\n"                                                       \
  "\n"                                                                                       \
  "NEWKEY:\n"                                                                                \
  "  --new-keyfile FILE   the new master key: a file of 32 bytes (\"-\": stdin)\n"           \
  "  --new-passfile FILE  the new passphrase, on FILE's first line (\"-\": stdin)\n"         \
  "  --new-master-command CMD  the new master key is CMD's output\n"                         \
  "  --new-pkcs11-module PATH --new-pkcs11-token LABEL --new-pkcs11-key LABEL\n"             \
  "                       a new master key, encrypted by that token's AES key\n"             \
  "  --new-pin-file FILE  its PIN (default: $ENVELOPEFS_NEW_PKCS11_PIN)\n"                   \
  "  --pkcs11-create-key  create the token's AES key if it does not exist\n"                 \
  "  --new-kmip-server HOST:PORT --new-tls-cert FILE --new-tls-key FILE --new-tls-ca FILE\n" \
  "  [--new-kmip-key-id ID]  a new master key, encrypted by that KMIP server's key\n"        \
  "  --kmip-create-key    create that key on the KMIP server (AES-256)\n"                    \
  "  (at most one of the old and the new key can be read from stdin)\n"
#define ENVELOPECTL_KEYS_POLICY                                                       \
  "usage: envelopectl keys policy [KEY] [--rotate-after-days N] [--audit-log on|off]" \
  " [--json] CIPHERDIR\n"                                                             \
  "\n"                                                                                \
  "Shows the volume's policy, or changes it.\n"                                       \
  "\n"                                                                                \
  "options:\n"                                                                        \
  "  --rotate-after-days N  rotation period of the active KEK version (1 to 36500)\n" \
  "  --audit-log on|off     keep the audit log in the cipher dir (syslog always)\n"   \
  "  --json                 machine-readable output\n"

#define ENVELOPECTL_KEYS_ADD_MASTER                                                        \
  "usage: envelopectl keys add-master [KEY] (NEWKEY | --new-recovery-key [-o FILE])\n"     \
  "                                   CIPHERDIR\n"                                         \
  "\n"                                                                                     \
  "Adds a master slot (up to 8; any one opens the volume). NEWKEY as for change-master;\n" \
  "--new-recovery-key makes a recovery key and shows it once (or writes it to -o FILE).\n"
#define ENVELOPECTL_KEYS_REMOVE_MASTER                                                      \
  "usage: envelopectl keys remove-master [KEY] --slot N CIPHERDIR\n"                        \
  "\n"                                                                                      \
  "Removes master slot N (never the last). Old copies of the keyring still open with its\n" \
  "secret: destroy it too.\n"
#define ENVELOPECTL_KEYS_DESTROY_OLD_MASTER                      \
  "usage: envelopectl keys destroy-old-master [KEY] CIPHERDIR\n" \
  "\n"                                                           \
  "Destroys the old HSM or KMS keys an interrupted retire --destroy-old-master left.\n"

constexpr char kKeysList[] =
    ENVELOPECTL_KEYS_LIST ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysRotate[] = ENVELOPECTL_KEYS_ROTATE
    "\noptions:\n  --json               machine-readable output\n" ENVELOPECTL_COMMON_OPTIONS
        ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysRetire[] =
    ENVELOPECTL_KEYS_RETIRE ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysChangeMaster[] =
    ENVELOPECTL_KEYS_CHANGE_MASTER ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysAddMaster[] =
    ENVELOPECTL_KEYS_ADD_MASTER "\noptions:\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysRemoveMaster[] = ENVELOPECTL_KEYS_REMOVE_MASTER
    "\noptions:\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysDestroyOldMaster[] = ENVELOPECTL_KEYS_DESTROY_OLD_MASTER
    "\noptions:\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;
constexpr char kKeysPolicy[] =
    ENVELOPECTL_KEYS_POLICY ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;

constexpr char kKeys[] =
    "usage: envelopectl keys list|rotate|retire|change-master|add-master|remove-master|\n"
    "                        destroy-old-master|policy [OPTIONS] CIPHERDIR\n"
    "\n"
    "Manages the KEK versions and the master key "
    "(envelopectl keys SUBCOMMAND --help: one of them).\n"
    "\n" ENVELOPECTL_KEYS_LIST "\n" ENVELOPECTL_KEYS_ROTATE "\n" ENVELOPECTL_KEYS_RETIRE
    "\n" ENVELOPECTL_KEYS_CHANGE_MASTER "\n" ENVELOPECTL_KEYS_ADD_MASTER
    "\n" ENVELOPECTL_KEYS_REMOVE_MASTER "\n" ENVELOPECTL_KEYS_DESTROY_OLD_MASTER
    "\n" ENVELOPECTL_KEYS_POLICY
    "\ncommon options:\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;

constexpr char kRewrap[] =
    "usage: envelopectl rewrap [KEY] [--jobs N] [--shard K/N] [--json] CIPHERDIR\n"
    "\n"
    "Moves every file's DEK to the active KEK version (header-only; safe while mounted).\n"
    "\n"
    "options:\n"
    "  --jobs N             threads (1 to 256; default: one per CPU)\n"
    "  --shard K/N          only the files of shard K of N (several machines)\n"
    "  --json               machine-readable output\n" ENVELOPECTL_COMMON_OPTIONS
        ENVELOPECTL_KEY_OPTIONS;

constexpr char kVerify[] =
    "usage: envelopectl verify [KEY] [--json] [--jobs N] CIPHERDIR\n"
    "\n"
    "Authenticates every name, chunk, symlink target and extended attribute.\n"
    "\n"
    "options:\n"
    "  --jobs N             threads (1 to 256; default: one per CPU)\n"
    "  --json               machine-readable output\n" ENVELOPECTL_COMMON_OPTIONS
        ENVELOPECTL_KEY_OPTIONS;

constexpr char kAudit[] =
    "usage: envelopectl audit [KEY] [--json] [--jobs N] [--prometheus FILE] CIPHERDIR\n"
    "\n"
    "A compliance report from the headers alone (the key is optional).\n"
    "\n"
    "options:\n"
    "  --jobs N             threads (1 to 256; default: one per CPU)\n"
    "  --json               machine-readable output\n"
    "  --prometheus FILE    also write node_exporter textfile metrics to "
    "FILE\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;

constexpr char kDecrypt[] =
    "usage: envelopectl decrypt [KEY] CIPHERFILE [-o OUT]\n"
    "       envelopectl decrypt [KEY] [--same-owner] [--jobs N] CIPHERDIR -o DIR\n"
    "\n"
    "Restores plaintext without FUSE: one cipher file, or a whole volume.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT     a new file (default, or \"-\": stdout) or a new or empty directory\n"
    "  --same-owner         restore owners and groups (root only)\n"
    "  --jobs N             threads for a whole volume (default: one per "
    "CPU)\n" ENVELOPECTL_COMMON_OPTIONS ENVELOPECTL_KEY_OPTIONS;

constexpr char kLs[] =
    "usage: envelopectl ls [KEY] [--json] CIPHERDIR\n"
    "\n"
    "Lists the plaintext path of every entry.\n"
    "\n"
    "options:\n"
    "  --json               with each entry's cipher path and type\n" ENVELOPECTL_COMMON_OPTIONS
        ENVELOPECTL_KEY_OPTIONS;

constexpr char kQuiesce[] =
    "usage: envelopectl quiesce [--timeout SECONDS] CIPHERDIR -- COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND (a backup of CIPHERDIR: rsync, restic, a snapshot) while the daemon that\n"
    "mounts the volume holds every change, with every file sealed and synced: the copy is\n"
    "consistent. Reads go on. Needs no key; only root and the daemon's user may ask. Without a\n"
    "running daemon the command just runs. Exits with COMMAND's status, or non-zero if the\n"
    "hold expired before COMMAND finished.\n"
    "\n"
    "options:\n"
    "  --timeout SECONDS    release the hold after this long at the latest (default 3600)\n"
    "  -q, --quiet          no messages\n"
    "  -h, --help           this help\n";

struct Entry {
  const char* words;  // "keys rotate"
  const char* text;
};

constexpr Entry kCommands[] = {
    {"init", kInit},
    {"inspect", kInspect},
    {"keys list", kKeysList},
    {"keys rotate", kKeysRotate},
    {"keys retire", kKeysRetire},
    {"keys change-master", kKeysChangeMaster},
    {"keys add-master", kKeysAddMaster},
    {"keys remove-master", kKeysRemoveMaster},
    {"keys destroy-old-master", kKeysDestroyOldMaster},
    {"keys policy", kKeysPolicy},
    {"keys", kKeys},
    {"rewrap", kRewrap},
    {"verify", kVerify},
    {"audit", kAudit},
    {"decrypt", kDecrypt},
    {"ls", kLs},
    {"quiesce", kQuiesce},
};

}  // namespace

const char* OverviewHelp() { return kOverview; }

const char* CommandHelp(const std::vector<std::string>& words) {
  if (words.empty()) return nullptr;
  const std::string two = words.size() >= 2 ? words[0] + " " + words[1] : std::string();
  for (const Entry& e : kCommands) {
    if (!two.empty() && two == e.words) return e.text;
  }
  for (const Entry& e : kCommands) {
    if (words[0] == e.words) return e.text;
  }
  return nullptr;
}

}  // namespace envelopefs::cli
