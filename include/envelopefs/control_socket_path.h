// Where a mounted volume's daemon listens for control requests (envelopectl quiesce): a Unix
// socket named after the volume id in a runtime directory, never in the cipher dir (anyone may
// write that). Root's daemons use /run/envelopefs (mode 0700); others $XDG_RUNTIME_DIR/envelopefs.
// Thread-safe.
#pragma once

#include <optional>
#include <string>

#include "envelopefs/volume_config.h"

namespace envelopefs {

// The runtime directory for this process's user, or std::nullopt when it has none (a user
// without $XDG_RUNTIME_DIR).
std::optional<std::string> ControlRuntimeDir();

// The control socket of volume `id` for this process's user, or std::nullopt (see above).
std::optional<std::string> ControlSocketPath(const VolumeId& id);

}  // namespace envelopefs
