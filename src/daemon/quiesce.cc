// EnvelopeFs::SealAll and Quiesce — every changed file sealed (at unmount; for a consistent,
// durable cipher dir for a backup: envelopectl quiesce).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "envelope_fs.h"
#include "envelopefs/log.h"

namespace envelopefs {

int EnvelopeFs::SealAll() {
  sealer_->Flush();  // closed files
  int first_error = 0;
  for (const auto& file : inodes_.OpenFiles()) {
    if (!file->NeedsSeal()) continue;
    if (int rc = file->Sync(); rc < 0) {
      Log(LogLevel::kError, std::string("sealing an open file failed: ") + std::strerror(-rc));
      if (first_error == 0) first_error = -rc;
    }
  }
  return first_error;
}

int EnvelopeFs::Quiesce(std::chrono::milliseconds limit) {
  if (!write_gate_.Hold(limit)) return EBUSY;
  int err = SealAll();
  if (err == 0 && ::syncfs(sync_fd_.get()) != 0) err = errno;
  if (err != 0) write_gate_.Release();
  return err;
}

void EnvelopeFs::Unquiesce() { write_gate_.Release(); }

}  // namespace envelopefs
