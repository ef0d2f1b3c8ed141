// Mount option lists — see mount_options.h.
#include "mount_options.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "envelopefs/error.h"

namespace envelopefs {
namespace {

// mount(8) and fstab options that mean nothing to FUSE (mount.fuse3 drops some of them itself,
// but not when envelopefs is run by hand or by another helper), and atime hints that libfuse
// does not accept (the kernel's default for FUSE, relatime, stays).
constexpr std::array<std::string_view, 16> kGenericOptions = {
    "defaults", "auto",  "noauto", "nofail",   "_netdev",  "user",       "users",    "nouser",
    "owner",    "group", "rw",     "relatime", "diratime", "nodiratime", "lazytime", "nolazytime"};
constexpr std::array<std::string_view, 3> kGenericPrefixes = {"comment=", "x-", "X-"};

// What libfuse 3.14 (fuse_session_new and fuse_session_mount) accepts, besides fsname= and
// subtype=, which envelopefs sets itself, and ro, which is the daemon's own --ro.
constexpr std::array<std::string_view, 20> kFuseOptions = {
    "allow_other", "allow_root", "auto_unmount", "default_permissions",
    "debug",       "dev",        "nodev",        "suid",
    "nosuid",      "exec",       "noexec",       "sync",
    "async",       "dirsync",    "atime",        "noatime",
    "context=",    "fscontext=", "defcontext=",  "rootcontext="};

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool IsFuseOption(std::string_view item) {
  for (std::string_view o : kFuseOptions) {
    if (o.back() == '=' ? StartsWith(item, o) && item.size() > o.size() : item == o) return true;
  }
  return false;
}

bool IsGenericOption(std::string_view item) {
  if (std::find(kGenericOptions.begin(), kGenericOptions.end(), item) != kGenericOptions.end()) {
    return true;
  }
  for (std::string_view p : kGenericPrefixes) {
    if (StartsWith(item, p)) return true;
  }
  return false;
}

std::string Normalized(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

}  // namespace

std::vector<std::string> SplitMountOptions(
    const std::string& list, const std::vector<DaemonOption>& daemon_options,
    const std::function<void(int code, const std::string& value)>& apply) {
  std::vector<std::string> fuse;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(start, comma - start);
    start = comma + 1;
    if (item.empty() || IsGenericOption(item)) continue;
    const size_t eq = item.find('=');
    const std::string name = Normalized(item.substr(0, eq));
    auto daemon = std::find_if(daemon_options.begin(), daemon_options.end(),
                               [&](const DaemonOption& o) { return o.name == name; });
    if (daemon != daemon_options.end()) {
      if (daemon->takes_value && (eq == std::string::npos || eq + 1 == item.size())) {
        throw Error(ErrorKind::kUsage,
                    "mount option " + item + " needs a value (" + daemon->name + "=...)");
      }
      if (!daemon->takes_value && eq != std::string::npos) {
        throw Error(ErrorKind::kUsage, "mount option " + item + " takes no value");
      }
      apply(daemon->code, daemon->takes_value ? item.substr(eq + 1) : std::string());
      continue;
    }
    if (StartsWith(item, "fsname=") || StartsWith(item, "subtype=")) {
      throw Error(ErrorKind::kUsage,
                  "mount option " + item.substr(0, item.find('=')) +
                      "= is set by envelopefs (to the cipher dir and \"envelopefs\")");
    }
    if (!IsFuseOption(item)) {
      throw Error(ErrorKind::kUsage, "unknown mount option " + item + " (see envelopefs --help)");
    }
    fuse.push_back(item);
  }
  return fuse;
}

std::string EscapeFuseOptionValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace envelopefs
