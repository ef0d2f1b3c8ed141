// envelopefs — mounts an envelopefs cipher dir and serves its plaintext view over FUSE.
//
// Usage: envelopefs [--keyfile FILE | --passfile FILE | --master-command CMD | --pkcs11-module
// PATH --pkcs11-token LABEL --pkcs11-key LABEL [--pin-file FILE] | --kmip-server HOST:PORT
// --tls-cert FILE --tls-key FILE --tls-ca FILE --kmip-key-id ID] [-f] [--ro] [--nonempty]
// [-o OPTIONS] CIPHERDIR MOUNTPOINT (also as run by mount.fuse3: CIPHERDIR MOUNTPOINT -o OPTIONS).
// Before anything else it checks the mount point (mount_checks.h) and locks the cipher dir
// (cipher_dir_lock.h). Without -f the process forks then; the child unlocks the volume and
// mounts, and the parent exits 0 only once the mount is ready (or prints the child's one-line
// error and its exit code). SIGINT, SIGTERM and SIGHUP unmount and exit 0.
#include <fcntl.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cipher_dir_lock.h"
#include "control_socket.h"
#include "envelope_fs.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"
#include "envelopefs/error_mapping.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/key_source_options.h"
#include "envelopefs/log.h"
#include "envelopefs/process_hardening.h"
#include "envelopefs/volume.h"
#include "inode_relief.h"
#include "mount_checks.h"
#include "mount_options.h"
#include "mount_table.h"

namespace envelopefs {
namespace {

constexpr char kUsage[] =
    "usage: envelopefs [--keyfile FILE | --passfile FILE | --master-command CMD | --pkcs11-... |\n"
    "                   --kmip-... | --recovery-key FILE]\n"
    "                  [-f] [--ro] [--nonempty] [-o OPTIONS] "
    "CIPHERDIR MOUNTPOINT\n"
    "\n"
    "  --keyfile FILE   master key: a file of 32 random bytes (- for stdin)\n"
    "  --passfile FILE  master key from the passphrase in FILE (first line; - for stdin)\n"
    "  --insecure-keyfile  accept a key, passphrase or PIN file that others can read\n"
    "  --master-command CMD  master key: CMD's output (32 bytes or 64 hex digits; sh -c,\n"
    "                   no terminal, 30 s timeout)\n"
    "  --pkcs11-module PATH --pkcs11-token LABEL --pkcs11-key LABEL\n"
    "                   master key encrypted by an AES key in a PKCS#11 token\n"
    "  --pin-file FILE  the token's PIN (first line; default: $ENVELOPEFS_PKCS11_PIN)\n"
    "  --kmip-server HOST:PORT --tls-cert FILE --tls-key FILE --tls-ca FILE --kmip-key-id ID\n"
    "                   master key encrypted by a KMIP server's AES key over mutual TLS\n"
    "                   (10 s timeouts)\n"
    "  --recovery-key FILE  the volume's recovery key (its text; - for stdin)\n"
    "  -f, --foreground stay in the foreground (log to stderr)\n"
    "  --ro             mount read-only\n"
    "  --nonempty       allow a mount point that is not empty (its files are hidden)\n"
    "  --noxattr        no extended attributes through the mount (EOPNOTSUPP): one FUSE\n"
    "                   round trip less per write, none for ls -l's attribute probes\n"
    "  -o OPTIONS       mount options, e.g. keyfile=FILE,allow_other,nosuid,nodev: the long\n"
    "                   options above (keyfile=, passfile=, ro, nonempty, ...), FUSE options,\n"
    "                   and fstab options (noauto, nofail, _netdev, x-systemd.*: ignored)\n"
    "  -d, --debug      FUSE debug output (implies -f)\n"
    "  -h, --help       this help\n"
    "  -V, --version    the version\n";

struct CommandLine {
  KeySourceOptions key;
  bool foreground = false;
  bool debug = false;
  bool read_only = false;
  bool nonempty = false;
  bool no_xattr = false;
  std::vector<std::string> fuse_options;
  std::string cipher_dir;
  std::string mountpoint;
  int seal_interval = 2;
};

[[noreturn]] void Fail(int code, const std::string& message) {
  std::fprintf(stderr, "envelopefs: %s\n", message.c_str());
  std::exit(code);
}

// Long options with codes from kFirstDaemonOption on may also be given in a -o list
// (keyfile=FILE, ro, ...): the key-source options (key_source_options.h, whose codes are
// higher) and the daemon's own below. -f, -d, -h and -V may not (a mount helper waits for the
// command).
enum { kFirstDaemonOption = 1000, kRo = kFirstDaemonOption, kSealInterval, kNonempty, kNoXattr };
static_assert(kFirstKeySourceOption > kNoXattr);
const option kOwnOptions[] = {
    {"foreground", no_argument, nullptr, 'f'},
    {"ro", no_argument, nullptr, kRo},
    {"nonempty", no_argument, nullptr, kNonempty},
    {"noxattr", no_argument, nullptr, kNoXattr},
    {"debug", no_argument, nullptr, 'd'},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'V'},
    {"seal-interval", required_argument, nullptr, kSealInterval},
};

// Applies a daemon option given as --NAME[=VALUE] or in a -o list. Throws Error(kUsage).
void ApplyDaemonOption(CommandLine& cl, int code, const std::string& value) {
  if (cl.key.Apply(code, value)) return;
  switch (code) {
    case kRo:
      cl.read_only = true;
      break;
    case kSealInterval:
      cl.seal_interval = std::max(1, std::atoi(value.c_str()));
      break;
    case kNonempty:
      cl.nonempty = true;
      break;
    case kNoXattr:
      cl.no_xattr = true;
      break;
  }
}

std::vector<DaemonOption> DaemonOptionsForLists(const std::vector<option>& long_options) {
  std::vector<DaemonOption> out;
  for (const option* o = long_options.data(); o->name != nullptr; ++o) {
    if (o->val >= kFirstDaemonOption) {
      out.push_back({o->name, o->has_arg == required_argument, o->val});
    }
  }
  return out;
}

CommandLine Parse(int argc, char** argv) {
  CommandLine cl;
  const std::vector<option> long_options =
      LongOptionsWithKeySource(KeySourceOptionSet::kCurrentKey, kOwnOptions);
  std::vector<std::string> option_lists;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":fo:dhV", long_options.data(), nullptr)) != -1) {
    if (c >= kFirstDaemonOption) {
      try {
        ApplyDaemonOption(cl, c, optarg != nullptr ? optarg : "");
      } catch (const std::exception& e) {
        Fail(ExitCodeFor(ErrorKindOf(e)), MessageOf(e));
      }
      continue;
    }
    switch (c) {
      case 'f':
        cl.foreground = true;
        break;
      case 'd':
        cl.debug = cl.foreground = true;
        break;
      case 'o':
        option_lists.emplace_back(optarg);
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        std::exit(kExitOk);
      case 'V':
        std::puts("envelopefs " ENVELOPEFS_VERSION);
        std::exit(kExitOk);
      case ':':
        Fail(kExitUsage, std::string("option ") + argv[optind - 1] + " needs an argument");
      default:
        Fail(kExitUsage,
             std::string("unknown option ") + argv[optind - 1] + " (see envelopefs --help)");
    }
  }
  if (argc - optind != 2) Fail(kExitUsage, "expected CIPHERDIR and MOUNTPOINT (see --help)");
  try {
    const std::vector<DaemonOption> daemon_options = DaemonOptionsForLists(long_options);
    auto apply = [&cl](int code, const std::string& value) { ApplyDaemonOption(cl, code, value); };
    for (const std::string& list : option_lists) {
      for (std::string& o : SplitMountOptions(list, daemon_options, apply)) {
        cl.fuse_options.push_back(std::move(o));
      }
    }
  } catch (const std::exception& e) {
    Fail(ExitCodeFor(ErrorKindOf(e)), MessageOf(e));
  }
  if (std::strncmp(argv[optind + 1], "/dev/fd/", 8) == 0) {
    Fail(kExitUsage,
         "a mount point given as /dev/fd/N (mount.fuse3's drop_privileges) is not "
         "supported");
  }
  // Absolute paths: the daemon changes to / once it runs in the background.
  char* dir = realpath(argv[optind], nullptr);
  if (dir == nullptr)
    Fail(kExitConfig, std::string("cipher dir ") + argv[optind] + ": " + std::strerror(errno));
  cl.cipher_dir = dir;
  free(dir);
  char* mnt = realpath(argv[optind + 1], nullptr);
  if (mnt == nullptr)
    Fail(kExitUsage, std::string("mount point ") + argv[optind + 1] + ": " + std::strerror(errno));
  cl.mountpoint = mnt;
  free(mnt);
  try {
    cl.key.Validate();
  } catch (const std::exception& e) {
    Fail(ExitCodeFor(ErrorKindOf(e)), MessageOf(e));
  }
  return cl;
}

void RaiseLimits() {
  rlimit lim;
  // One O_PATH fd per inode the kernel caches: a data lake's worth of files must fit. Root may
  // raise the hard limit up to fs.nr_open; others get their hard limit.
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    unsigned long nr_open = 0;
    if (FILE* f = fopen("/proc/sys/fs/nr_open", "r")) {
      if (fscanf(f, "%lu", &nr_open) != 1) nr_open = 0;
      fclose(f);
    }
    if (geteuid() == 0 && nr_open > lim.rlim_max) lim.rlim_max = nr_open;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0 && getrlimit(RLIMIT_NOFILE, &lim) == 0) {
      lim.rlim_cur = lim.rlim_max;
      setrlimit(RLIMIT_NOFILE, &lim);
    }
  }
  if (geteuid() == 0) {
    lim.rlim_cur = lim.rlim_max = RLIM_INFINITY;  // key material of every open file is mlocked
    setrlimit(RLIMIT_MEMLOCK, &lim);
  }
}

// FUSE mounts get the kernel's default readahead (128 KiB), which leaves one request in flight
// for a sequential reader. A larger window lets the kernel send the next requests while the
// current one is decrypted, so both cores work on a cold sequential read. Best effort (root).
void RaiseReadahead(const std::string& mountpoint) {
  // The device number comes from /proc/self/mountinfo: a stat(2) of the mount point would
  // wait for this very daemon, which does not serve requests yet.
  std::string device;
  for (const MountEntry& m : ReadMountTable()) {
    if (m.mount_point == mountpoint) device = m.device;  // the last match is the newest mount
  }
  if (device.empty()) return;
  if (std::FILE* ra = fopen(("/sys/class/bdi/" + device + "/read_ahead_kb").c_str(), "w")) {
    fputs("1024", ra);
    fclose(ra);
  }
}

// Reports the outcome of mounting to the waiting parent: one byte of exit code, then a message.
void Report(int fd, int code, const std::string& message) {
  if (fd < 0) {
    if (code != 0) Fail(code, message);
    return;
  }
  std::string out(1, static_cast<char>(code));
  out += message;
  (void)!write(fd, out.data(), out.size());
  close(fd);
  if (code != 0) std::_Exit(code);
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "other";
  }
}

// Checks the mount point and locks the cipher dir (before a passphrase is asked for); exits
// with one line if either is refused. The lock is held by the returned object, and across the
// fork by the daemon.
CipherDirLock PrepareMount(const CommandLine& cl) {
  try {
    CheckMountTargets(cl.cipher_dir, cl.mountpoint, cl.nonempty);
    return CipherDirLock(cl.cipher_dir);
  } catch (const std::exception& e) {
    Fail(ExitCodeFor(ErrorKindOf(e)), MessageOf(e));
  }
}

int Serve(const CommandLine& cl, int report_fd) {
  std::unique_ptr<EnvelopeFs> fs;
  try {
    auto source = cl.key.KeySource(/*confirm=*/false);
    auto volume = OpenVolumeAudited(cl.cipher_dir, *source,
                                    {{"mountpoint", cl.mountpoint}, {"read_only", cl.read_only}});
    MountOptions options;
    options.read_only = cl.read_only;
    options.xattrs = !cl.no_xattr;
    options.seal_interval_seconds = cl.seal_interval;
    fs = std::make_unique<EnvelopeFs>(std::move(volume), options);
  } catch (const std::exception& e) {
    Report(report_fd, ExitCodeFor(ErrorKindOf(e)), MessageOf(e));
  }
  if (report_fd >= 0) {
    // Detach only now: a passphrase prompt above needs the caller's terminal.
    setsid();
    if (chdir("/") != 0) {
      // Paths were made absolute while parsing; keep going.
    }
  }
  std::vector<std::string> args = {"envelopefs"};
  // The cipher dir as the mount's source: a second daemon names this mount (cipher_dir_lock.h).
  std::string opts = "fsname=" + EscapeFuseOptionValue(cl.cipher_dir) + ",subtype=envelopefs";
  // The kernel checks modes, as on ext4: with allow_other as any user, and always as root.
  opts += ",default_permissions";
  if (cl.read_only) opts += ",ro";
  for (const auto& o : cl.fuse_options) opts += "," + o;
  args.push_back("-o");
  args.push_back(opts);
  if (cl.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  const fuse_lowlevel_ops ops = EnvelopeFs::Operations(fs->options());
  fuse_session* se = fuse_session_new(&fargs, &ops, sizeof(ops), fs.get());
  if (se == nullptr) Report(report_fd, kExitUsage, "invalid FUSE options: " + opts);
  fs->set_session(se);
  if (fuse_set_signal_handlers(se) != 0) Report(report_fd, kExitIo, "cannot set signal handlers");
  if (fuse_session_mount(se, cl.mountpoint.c_str()) != 0) {
    Report(report_fd, kExitIo, "cannot mount on " + cl.mountpoint);
  }
  RaiseReadahead(cl.mountpoint);
  Log(LogLevel::kInfo, "mounted " + cl.cipher_dir + " on " + cl.mountpoint);
  Log(LogLevel::kInfo, fs->inode_mode());
  if (report_fd >= 0) {
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      if (null > 2) close(null);
    }
    Report(report_fd, 0, "");
  }

  // Destroyed before the file system whose inode table it watches.
  auto relief = std::make_unique<InodeRelief>(fs->inodes());
  relief->Start(se);
  auto control = ControlSocket::Start(*fs);  // envelopectl quiesce
  fuse_loop_config* config = fuse_loop_cfg_create();
  // Two cores: eight workers keep both busy while others wait on I/O. All eight stay when idle
  // (each holds about 4 MiB of request and crypto buffers): starting and stopping threads with
  // every burst of requests cost more than that memory (bench/run).
  fuse_loop_cfg_set_max_threads(config, 8);
  fuse_loop_cfg_set_idle_threads(config, 8);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  control.reset();  // releases a hold, removes the socket
  relief.reset();   // stops it
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&fargs);  // fuse_session_new may have added arguments
  fs->SealAll();               // every file's exact size is recorded before the event says so
  // The loop returns 0 after an unmount, the signal's number after SIGINT, SIGTERM or SIGHUP
  // (libfuse's handlers unmount), and a negative errno on failure.
  const bool clean = rc >= 0;
  AppendAuditEvent(fs->volume(), "volume_unmounted",
                   {{"mountpoint", cl.mountpoint},
                    {"reason", rc == 0  ? std::string("unmounted")
                               : rc > 0 ? std::string("signal ") + SignalName(rc)
                                        : std::string("error: ") + std::strerror(-rc)}});
  fs.reset();  // wipes keys
  Log(LogLevel::kInfo, "unmounted " + cl.mountpoint);
  return clean ? kExitOk : kExitIo;
}

int Main(int argc, char** argv) {
  HardenProcess();
  SetAuditProgram("envelopefs");
  CommandLine cl = Parse(argc, argv);
  CipherDirLock lock = PrepareMount(cl);
  RaiseLimits();
  umask(0);  // the kernel has already applied the caller's umask to modes we receive
  if (cl.foreground) return Serve(cl, -1);

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) Fail(kExitIo, "pipe failed");
  pid_t pid = fork();
  if (pid < 0) Fail(kExitIo, "fork failed");
  if (pid == 0) {
    close(pipefd[0]);
    openlog("envelopefs", LOG_PID, LOG_DAEMON);
    SetLogSink([](LogLevel level, const std::string& message) {
      int priority = level == LogLevel::kError     ? LOG_ERR
                     : level == LogLevel::kWarning ? LOG_WARNING
                                                   : LOG_INFO;
      syslog(priority, "%s", message.c_str());
    });
    std::_Exit(Serve(cl, pipefd[1]));
  }
  close(pipefd[1]);
  char buf[4096];
  std::string result;
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
  if (result.empty()) {
    int status = 0;
    waitpid(pid, &status, 0);
    Fail(kExitIo, "the daemon exited before mounting");
  }
  int code = static_cast<unsigned char>(result[0]);
  if (code != 0) {
    waitpid(pid, nullptr, 0);
    Fail(code, result.substr(1));
  }
  return kExitOk;
}

}  // namespace
}  // namespace envelopefs

int main(int argc, char** argv) { return envelopefs::Main(argc, argv); }
