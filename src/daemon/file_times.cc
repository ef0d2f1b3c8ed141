#include "file_times.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "envelopefs/error_mapping.h"
#include "envelopefs/shown_ctime.h"

namespace envelopefs {

void ShowCtime(Inode* inode, int fd, struct stat& st) {
  if (inode != nullptr) {
    std::lock_guard<std::mutex> lock(inode->mutex);
    if (inode->ctime_memo && SameTime(inode->ctime_memo->backing, st.st_ctim)) {
      st.st_ctim = inode->ctime_memo->shown;
      return;
    }
  }
  const struct timespec backing = st.st_ctim;
  st.st_ctim = ReadShownCtime(fd, st);
  if (inode != nullptr) {
    std::lock_guard<std::mutex> lock(inode->mutex);
    inode->ctime_memo = Inode::CtimeMemo{backing, st.st_ctim};
  }
}

int SetFileTimes(Inode& inode, int fd, const struct timespec times[2]) {
  std::shared_ptr<CipherFile> open;
  if (S_ISREG(inode.type)) {
    std::lock_guard<std::mutex> lock(inode.mutex);
    open = inode.open_file.lock();
  }
  if (open) return ErrnoOf(open->SetTimes(times));
  const int rc = S_ISLNK(inode.type) ? utimensat(fd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
                                     : utimensat(AT_FDCWD, ProcFdPath(fd).c_str(), times, 0);
  return rc == 0 ? 0 : errno;
}

}  // namespace envelopefs
