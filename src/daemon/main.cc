// envelopefs — mounts an envelopefs cipher dir and serves its plaintext view over FUSE.
//
// Usage: envelopefs [--keyfile FILE | --passfile FILE] [-f] [--ro] [-o OPTIONS] CIPHERDIR
// MOUNTPOINT Without -f the process forks first; the child unlocks the volume and mounts, and the
// parent exits 0 only once the mount is ready (or prints the child's one-line error and its exit
// code).
#include <fcntl.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "envelope_fs.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/key_source.h"
#include "envelopefs/log.h"
#include "envelopefs/process_hardening.h"
#include "envelopefs/volume.h"
#include "inode_relief.h"

namespace envelopefs {
namespace {

constexpr char kUsage[] =
    "usage: envelopefs [--keyfile FILE | --passfile FILE] [-f] [--ro] [-o OPTIONS] CIPHERDIR "
    "MOUNTPOINT\n"
    "\n"
    "  --keyfile FILE   master key: a file of 32 random bytes\n"
    "  --passfile FILE  master key from the passphrase in FILE (first line; - for stdin)\n"
    "  --insecure-keyfile  accept a key or passphrase file that others can read\n"
    "  -f, --foreground stay in the foreground (log to stderr)\n"
    "  --ro             mount read-only\n"
    "  -o OPTIONS       FUSE mount options, e.g. allow_other,default_permissions\n"
    "  -d, --debug      FUSE debug output (implies -f)\n"
    "  -h, --help       this help\n"
    "  -V, --version    the version\n";

struct CommandLine {
  std::string keyfile;
  std::string passfile;
  bool insecure_keyfile = false;
  bool foreground = false;
  bool debug = false;
  bool read_only = false;
  std::vector<std::string> fuse_options;
  std::string cipher_dir;
  std::string mountpoint;
  int seal_interval = 2;
};

[[noreturn]] void Fail(int code, const std::string& message) {
  std::fprintf(stderr, "envelopefs: %s\n", message.c_str());
  std::exit(code);
}

CommandLine Parse(int argc, char** argv) {
  enum { kKeyfile = 1000, kPassfile, kRo, kSealInterval, kInsecureKeyfile };
  static const option kLong[] = {
      {"keyfile", required_argument, nullptr, kKeyfile},
      {"passfile", required_argument, nullptr, kPassfile},
      {"insecure-keyfile", no_argument, nullptr, kInsecureKeyfile},
      {"foreground", no_argument, nullptr, 'f'},
      {"ro", no_argument, nullptr, kRo},
      {"debug", no_argument, nullptr, 'd'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {"seal-interval", required_argument, nullptr, kSealInterval},
      {nullptr, 0, nullptr, 0},
  };
  CommandLine cl;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":fo:dhV", kLong, nullptr)) != -1) {
    switch (c) {
      case kKeyfile:
        cl.keyfile = optarg;
        break;
      case kPassfile:
        cl.passfile = optarg;
        break;
      case kRo:
        cl.read_only = true;
        break;
      case kInsecureKeyfile:
        cl.insecure_keyfile = true;
        break;
      case kSealInterval:
        cl.seal_interval = std::max(1, std::atoi(optarg));
        break;
      case 'f':
        cl.foreground = true;
        break;
      case 'd':
        cl.debug = cl.foreground = true;
        break;
      case 'o':
        cl.fuse_options.emplace_back(optarg);
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
  if (!cl.keyfile.empty() && !cl.passfile.empty()) {
    Fail(kExitUsage, "--keyfile and --passfile are mutually exclusive");
  }
  return cl;
}

std::unique_ptr<MasterKeySource> KeySource(const CommandLine& cl) {
  if (!cl.keyfile.empty()) return MakeKeyFileSource(cl.keyfile, cl.insecure_keyfile);
  if (!cl.passfile.empty()) return MakePassFileSource(cl.passfile, cl.insecure_keyfile);
  return MakePromptSource(false);
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
  std::FILE* f = fopen("/proc/self/mountinfo", "r");
  if (f == nullptr) return;
  char line[8192];
  std::string device;
  while (fgets(line, sizeof line, f) != nullptr) {
    // "<id> <parent> <major:minor> <root> <mount point> ..."
    char dev[64], root[4096], point[4096];
    if (sscanf(line, "%*s %*s %63s %4095s %4095s", dev, root, point) == 3 && mountpoint == point) {
      device = dev;  // the last match is the newest mount
    }
  }
  fclose(f);
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

// Sends tamper reports to the audit log, once per file and detail (a damaged file that is
// read again and again must not flood the log). `volume` outlives the hook's use: the last
// reports come from seals in EnvelopeFs's destructor, which run before the volume it owns is
// destroyed, and the hook is cleared right after.
void InstallTamperAudit(const Volume& volume) {
  struct Seen {
    std::mutex mutex;
    std::set<std::string> keys;
  };
  auto seen = std::make_shared<Seen>();
  SetTamperHook([&volume, seen](const std::string& file, const std::string& detail) {
    {
      std::lock_guard<std::mutex> lock(seen->mutex);
      if (seen->keys.size() > 4096) seen->keys.clear();
      if (!seen->keys.insert(file + '\n' + detail).second) return;
    }
    AppendAuditEvent(volume, "tamper_detected", {{"file", file}, {"detail", detail}});
  });
}

int Serve(const CommandLine& cl, int report_fd) {
  std::unique_ptr<EnvelopeFs> fs;
  try {
    auto source = KeySource(cl);
    auto volume = OpenVolumeAudited(cl.cipher_dir, *source,
                                    {{"mountpoint", cl.mountpoint}, {"read_only", cl.read_only}});
    InstallTamperAudit(*volume);
    MountOptions options;
    options.read_only = cl.read_only;
    options.seal_interval_seconds = cl.seal_interval;
    fs = std::make_unique<EnvelopeFs>(std::move(volume), options);
  } catch (const Error& e) {
    Report(report_fd, ExitCodeFor(e.kind()), e.what());
  }
  if (report_fd >= 0) {
    // Detach only now: a passphrase prompt above needs the caller's terminal.
    setsid();
    if (chdir("/") != 0) {
      // Paths were made absolute while parsing; keep going.
    }
  }
  struct stat st;
  if (stat(cl.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    Report(report_fd, kExitUsage, "mount point " + cl.mountpoint + " is not a directory");
  }

  std::vector<std::string> args = {"envelopefs"};
  std::string opts = "fsname=" + cl.cipher_dir + ",subtype=envelopefs";
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

  fuse_session* se =
      fuse_session_new(&fargs, &EnvelopeFs::Operations(), sizeof(fuse_lowlevel_ops), fs.get());
  if (se == nullptr) Report(report_fd, kExitUsage, "invalid FUSE options: " + opts);
  if (fuse_set_signal_handlers(se) != 0) Report(report_fd, kExitIo, "cannot set signal handlers");
  if (fuse_session_mount(se, cl.mountpoint.c_str()) != 0) {
    Report(report_fd, kExitIo, "cannot mount on " + cl.mountpoint);
  }
  RaiseReadahead(cl.mountpoint);
  Log(LogLevel::kInfo, "mounted " + cl.cipher_dir + " on " + cl.mountpoint);
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

  InodeRelief relief(fs->inodes());
  relief.Start(se);
  fuse_loop_config* config = fuse_loop_cfg_create();
  // Two cores: eight workers keep both busy while others wait on I/O. Each worker holds about
  // 4 MiB of request and crypto buffers, so idle workers beyond four exit (peak RSS).
  fuse_loop_cfg_set_max_threads(config, 8);
  fuse_loop_cfg_set_idle_threads(config, 8);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  relief.Stop();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fs.reset();  // seals what is left, wipes keys
  SetTamperHook(nullptr);
  Log(LogLevel::kInfo, "unmounted " + cl.mountpoint);
  return rc == 0 ? kExitOk : kExitIo;
}

int Main(int argc, char** argv) {
  HardenProcess();
  SetAuditProgram("envelopefs");
  CommandLine cl = Parse(argc, argv);
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
