// Mount option lists — the `-o` lists of envelopefs, as fstab and mount.fuse3 pass them.
//
// `mount -t fuse.envelopefs -o keyfile=K,allow_other CIPHERDIR MNT` (or the same fstab line)
// runs mount.fuse3, which runs `envelopefs CIPHERDIR MNT -o rw,keyfile=K,allow_other,dev,suid`.
// Each item of such a list is one of:
//   - a daemon option (keyfile=FILE, passfile=FILE, ro, nonempty, ...: the long options of the
//     command line, '_' or '-' alike), applied as if given as --NAME[=VALUE];
//   - a generic mount(8)/fstab option that FUSE must not see (defaults, auto, noauto, nofail,
//     _netdev, user, users, nouser, owner, group, rw, comment=..., x-..., X-...): dropped;
//   - a FUSE/kernel mount option (allow_other, nosuid, nodev, noatime, ...): passed through;
//   - anything else: an error (Error(kUsage), one line naming the option).
// Items are separated by commas; a value cannot contain one (mount.fuse3 splits on every comma).
// Stateless functions; thread-safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace envelopefs {

// A daemon option that may appear in a -o list.
struct DaemonOption {
  std::string name;  // the long option's name, e.g. "keyfile", "insecure-keyfile"
  bool takes_value;  // NAME=VALUE (true) or NAME (false)
  int code;          // passed to the apply callback
};

// Splits `list`: daemon options go to `apply(code, value)` (value empty for flags), generic
// mount options are dropped, FUSE options are returned in order. Throws Error(kUsage).
std::vector<std::string> SplitMountOptions(
    const std::string& list, const std::vector<DaemonOption>& daemon_options,
    const std::function<void(int code, const std::string& value)>& apply);

// `value` escaped for a FUSE option list (backslash before ',' and '\'), e.g. for fsname=.
std::string EscapeFuseOptionValue(const std::string& value);

}  // namespace envelopefs
