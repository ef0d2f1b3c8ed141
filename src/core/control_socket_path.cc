#include "envelopefs/control_socket_path.h"

#include <unistd.h>

#include <cstdlib>

#include "envelopefs/encoding.h"

namespace envelopefs {

std::optional<std::string> ControlRuntimeDir() {
  if (geteuid() == 0) return std::string("/run/envelopefs");
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg == nullptr || xdg[0] != '/') return std::nullopt;
  return std::string(xdg) + "/envelopefs";
}

std::optional<std::string> ControlSocketPath(const VolumeId& id) {
  auto dir = ControlRuntimeDir();
  if (!dir) return std::nullopt;
  return *dir + "/" + ToHex(id) + ".sock";
}

}  // namespace envelopefs
