// OfflineVolume — see offline_volume.h.
#include "offline_volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "envelopefs/cipher_file.h"
#include "envelopefs/key_source.h"
#include "envelopefs/long_symlink.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs::testing {

namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

OfflineVolume::Dir::~Dir() {
  if (fd >= 0) close(fd);
}

OfflineVolume::OfflineVolume(const std::string& init_flags) {
  cipher_ = root_.path() / "cipher";
  keyfile_ = root_.path() / "key";
  CommandResult key = RunCommand("umask 077; head -c 32 /dev/urandom > " + Quote(keyfile_));
  if (key.exit_code != 0) throw std::runtime_error("cannot make a key file");
  CommandResult init = RunCommand(std::string(ENVELOPECTL_BINARY) + " init --keyfile " +
                                  Quote(keyfile_) + " " + init_flags + " " + Quote(cipher_));
  if (init.exit_code != 0) throw std::runtime_error("envelopectl init failed: " + init.output);
  volume_ = Volume::Open(cipher_, *MakeKeyFileSource(keyfile_));
  names_ = std::make_unique<NameTransform>(volume_->name_key(), volume_->xattr_key(),
                                           volume_->config().plaintext_names,
                                           volume_->config().format_version);
}

std::string OfflineVolume::Ctl(const std::string& args) const {
  return std::string(ENVELOPECTL_BINARY) + " " + args + " --keyfile " + Quote(keyfile_);
}

std::string OfflineVolume::BackingName(const Dir& dir, const std::string& name,
                                       bool in_root) const {
  DirIvs ivs = names_->ReadDirIvs(dir.fd);
  auto backing = names_->ToBacking(ivs.primary, name, in_root);
  if (!backing) throw std::runtime_error("invalid name " + name);
  if (NameTransform::IsLongName(*backing) &&
      names_->WriteLongNameSideFile(dir.fd, ivs.primary, name, *backing) != 0) {
    throw std::runtime_error("cannot write the long-name side file of " + name);
  }
  return *backing;
}

std::unique_ptr<OfflineVolume::Dir> OfflineVolume::OpenDir(const fs::path& dir, bool create) const {
  auto d = std::make_unique<Dir>();
  d->cipher = cipher_;
  d->fd = open(cipher_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  Check(d->fd >= 0, "open " + cipher_.string());
  bool in_root = true;
  for (const fs::path& part : dir) {
    if (part.empty() || part == ".") continue;
    std::string backing = BackingName(*d, part.string(), in_root);
    if (create) {
      int rc = names_->MakeDirectory(d->fd, backing, 0755);
      if (rc != 0 && rc != -EEXIST) throw std::runtime_error("mkdir " + part.string());
    }
    int child = openat(d->fd, backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    Check(child >= 0, "open directory " + part.string());
    close(d->fd);
    d->fd = child;
    d->cipher /= backing;
    in_root = false;
  }
  return d;
}

fs::path OfflineVolume::Write(const std::string& path, const std::string& content) {
  volume_->ReloadKeyringIfChanged(damage_);
  fs::path p(path);
  auto dir = OpenDir(p.parent_path(), true);
  std::string backing = BackingName(*dir, p.filename().string(), p.parent_path().empty());
  UniqueFd fd(openat(dir->fd, backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  Check(fd.valid(), "create " + path);
  auto file = CipherFile::Create(std::move(fd), *volume_, path, damage_);
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(content.data()), content.size());
  if (!content.empty() && file->Write(bytes, 0) != static_cast<ssize_t>(content.size())) {
    throw std::runtime_error("write " + path);
  }
  // Seal without a second flush (tests do not need durability): as the daemon does after close.
  if (file->SealIfUnchanged(file->ModificationCount()) != 0) {
    throw std::runtime_error("seal " + path);
  }
  return dir->cipher / backing;
}

fs::path OfflineVolume::Mkdir(const std::string& path) { return OpenDir(path, true)->cipher; }

fs::path OfflineVolume::Symlink(const std::string& path, const std::string& target) {
  fs::path p(path);
  auto dir = OpenDir(p.parent_path(), true);
  std::string backing = BackingName(*dir, p.filename().string(), p.parent_path().empty());
  Check(CreateBackingSymlink(*names_, volume_->root_fd(), dir->fd, backing, target) == 0,
        "symlink " + path);
  return dir->cipher / backing;
}

fs::path OfflineVolume::Link(const std::string& existing, const std::string& path) {
  fs::path from = CipherPath(existing);
  fs::path p(path);
  auto dir = OpenDir(p.parent_path(), true);
  std::string backing = BackingName(*dir, p.filename().string(), p.parent_path().empty());
  Check(linkat(AT_FDCWD, from.c_str(), dir->fd, backing.c_str(), 0) == 0, "link " + path);
  return dir->cipher / backing;
}

fs::path OfflineVolume::CipherPath(const std::string& path) const {
  fs::path p(path);
  auto dir = OpenDir(p.parent_path(), false);
  DirIvs ivs = names_->ReadDirIvs(dir->fd);
  auto backing = names_->ToBacking(ivs.primary, p.filename().string(), p.parent_path().empty());
  if (!backing) throw std::runtime_error("invalid name " + path);
  return dir->cipher / *backing;
}

}  // namespace envelopefs::testing
