// BackingHandle — see backing_handle.h.
#include "backing_handle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

// struct file_handle with room for the longest handle we keep.
struct HandleBuffer {
  struct file_handle header;
  unsigned char bytes[BackingHandle::kMaxBytes];
};

}  // namespace

bool BackingHandle::Make(int fd, int mount_id) {
  HandleBuffer buf;
  buf.header.handle_bytes = kMaxBytes;
  int id = -1;
  if (name_to_handle_at(fd, "", &buf.header, &id, AT_EMPTY_PATH) != 0) return false;
  if (id != mount_id || buf.header.handle_bytes == 0 || buf.header.handle_bytes > kMaxBytes) {
    return false;
  }
  type_ = buf.header.handle_type;
  size_ = static_cast<uint8_t>(buf.header.handle_bytes);
  std::memcpy(bytes_, buf.header.f_handle, size_);
  return true;
}

int BackingHandle::Open(int mount_fd) const {
  if (!valid()) {
    errno = EBADF;
    return -1;
  }
  HandleBuffer buf;
  buf.header.handle_bytes = size_;
  buf.header.handle_type = type_;
  std::memcpy(buf.header.f_handle, bytes_, size_);
  return open_by_handle_at(mount_fd, &buf.header, O_PATH | O_CLOEXEC);
}

bool BackingHandle::operator==(const BackingHandle& other) const {
  return type_ == other.type_ && size_ == other.size_ &&
         std::memcmp(bytes_, other.bytes_, size_) == 0;
}

std::string ProbeFileHandles(int root_fd, int* mount_id) {
  BackingHandle handle;
  HandleBuffer buf;
  buf.header.handle_bytes = BackingHandle::kMaxBytes;
  if (name_to_handle_at(root_fd, "", &buf.header, mount_id, AT_EMPTY_PATH) != 0) {
    return std::string("name_to_handle_at: ") + std::strerror(errno);
  }
  if (!handle.Make(root_fd, *mount_id)) return "the cipher dir's handle is too long";
  UniqueFd fd(handle.Open(root_fd));
  if (!fd.valid()) return std::string("open_by_handle_at: ") + std::strerror(errno);
  struct stat want, got;
  if (fstat(root_fd, &want) != 0 || fstat(fd.get(), &got) != 0 || want.st_dev != got.st_dev ||
      want.st_ino != got.st_ino) {
    return "open_by_handle_at opened another object";
  }
  return "";
}

}  // namespace envelopefs
