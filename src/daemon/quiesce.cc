// EnvelopeFs::Quiesce — a consistent, durable cipher dir for a backup (envelopectl quiesce).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "envelope_fs.h"
#include "envelopefs/log.h"

namespace envelopefs {

int EnvelopeFs::Quiesce(std::chrono::milliseconds limit) {
  if (!write_gate_.Hold(limit)) return EBUSY;
  sealer_->Flush();  // closed files
  for (const auto& file : inodes_.OpenFiles()) {
    if (!file->NeedsSeal()) continue;
    if (int rc = file->Sync(); rc < 0) {
      Log(LogLevel::kError,
          std::string("quiesce: sealing an open file failed: ") + std::strerror(-rc));
      write_gate_.Release();
      return -rc;
    }
  }
  if (::syncfs(sync_fd_.get()) != 0) {
    const int err = errno;
    write_gate_.Release();
    return err;
  }
  return 0;
}

void EnvelopeFs::Unquiesce() { write_gate_.Release(); }

}  // namespace envelopefs
