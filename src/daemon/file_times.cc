#include "file_times.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace envelopefs {
namespace {

bool Same(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

void WatchSeals(Inode& inode, CipherFile& file) {
  if (!inode.sealed_ctime) inode.sealed_ctime = std::make_shared<SealedCtime>();
  file.set_seal_observer(
      [memo = inode.sealed_ctime](const struct timespec& before, const struct timespec& after) {
        std::lock_guard<std::mutex> lock(memo->mutex);
        // Seals one after another with nothing in between keep hiding the first one's predecessor.
        if (!memo->set || !Same(before, memo->left)) memo->shown = before;
        memo->left = after;
        memo->set = true;
      });
}

void HideSealCtime(const Inode& inode, struct stat& st) {
  if (!inode.sealed_ctime) return;
  SealedCtime& memo = *inode.sealed_ctime;
  std::lock_guard<std::mutex> lock(memo.mutex);
  if (memo.set && Same(st.st_ctim, memo.left)) st.st_ctim = memo.shown;
}

int SetFileTimes(Inode& inode, const struct timespec times[2]) {
  std::shared_ptr<CipherFile> open;
  if (S_ISREG(inode.type)) {
    std::lock_guard<std::mutex> lock(inode.mutex);
    open = inode.open_file.lock();
  }
  if (open) return -open->SetTimes(times);
  const int rc = S_ISLNK(inode.type)
                     ? utimensat(inode.fd.get(), "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
                     : utimensat(AT_FDCWD, ProcPath(inode.fd.get()).c_str(), times, 0);
  return rc == 0 ? 0 : errno;
}

}  // namespace envelopefs
