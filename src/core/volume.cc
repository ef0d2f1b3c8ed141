// Volume — see volume.h.
#include "envelopefs/volume.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/file_format.h"
#include "envelopefs/host_state.h"
#include "envelopefs/log.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

constexpr char kNameKeyLabel[] = "envelopefs names v1";
constexpr char kXattrKeyLabel[] = "envelopefs xattr v1";
constexpr char kAuditKeyLabel[] = "envelopefs audit v1";
constexpr size_t kNameKeySize = 64;
// Left behind by an interrupted master-key change of envelopefs 0.1; never read again.
constexpr char kStaleStagedKeyring[] = "envelopefs.keyring.new";

bool IsEmptyDirectory(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_empty(dir, ec) && !ec;
}

void ValidateChunkSize(uint32_t chunk_size) {
  if (!format::IsValidChunkSize(chunk_size)) {
    throw Error(ErrorKind::kUsage, "invalid chunk size " + std::to_string(chunk_size) +
                                       ": must be a power of two from 4K to 1M (4K, 8K, 16K, "
                                       "32K, 64K, 128K, 256K, 512K or 1M)");
  }
}

// flock(LOCK_EX) on envelopefs.keyring.lock for the lifetime of the object: serialises keyring
// changes between processes (envelopectl commands, and the daemon).
class KeyringLock {
 public:
  KeyringLock(int root_fd, const std::filesystem::path& cipher_dir) {
    fd_.reset(
        ::openat(root_fd, kKeyringLockFileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd_.valid())
      ThrowSystemError("cannot open " + (cipher_dir / kKeyringLockFileName).string());
    while (::flock(fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR) ThrowSystemError("cannot lock the keyring");
    }
  }

 private:
  UniqueFd fd_;  // closing it releases the lock
};

}  // namespace

std::unique_ptr<Volume> Volume::Create(const std::filesystem::path& cipher_dir,
                                       const CreateOptions& options,
                                       const MasterKeySource& source) {
  EnsureCryptoInitialized();
  uint32_t chunk_size = options.chunk_size == 0 ? format::kDefaultChunkSize : options.chunk_size;
  ValidateChunkSize(chunk_size);
  std::error_code ec;
  bool created_dir = false;
  if (!std::filesystem::exists(cipher_dir, ec)) {
    if (::mkdir(cipher_dir.c_str(), 0700) != 0)
      ThrowSystemError("cannot create " + cipher_dir.string());
    created_dir = true;
  } else if (!std::filesystem::is_directory(cipher_dir, ec)) {
    throw Error(ErrorKind::kUsage, cipher_dir.string() + " is not a directory");
  } else if (!IsEmptyDirectory(cipher_dir)) {
    throw Error(ErrorKind::kState, cipher_dir.string() + " is not empty; refusing to init");
  }

  std::unique_ptr<Volume> v(new Volume());
  v->cipher_dir_ = cipher_dir;
  v->root_fd_.reset(::open(cipher_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!v->root_fd_.valid()) ThrowSystemError("cannot open " + cipher_dir.string());
  try {
    VolumeConfig& c = v->config_;
    c.format_version = kVolumeFormat;
    RandomBytes(c.volume_id);
    c.chunk_size = chunk_size;
    c.plaintext_names = options.plaintext_names;
    c.created_unix = static_cast<int64_t>(::time(nullptr));
    MasterKeyParams params = source.NewParams();
    v->master_key_ = source.MasterKey(params);
    v->keyring_ = Keyring::CreateNew(c.created_unix, params, VolumePolicy{});
    v->DeriveVolumeKeys();
    if (!c.plaintext_names) {
      UniqueFd dirfd(::openat(v->root_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dirfd.valid()) ThrowSystemError("cannot open " + cipher_dir.string());
      NameTransform(v->name_key_, v->xattr_key_, false, c.format_version).InitDirIv(dirfd.get());
    }
    v->SaveKeyring(v->keyring_, v->master_key_);
    c.SaveAt(v->root_fd(), cipher_dir);  // last: a volume without a config is clearly unfinished
    ::chmod(cipher_dir.c_str(), 0700);
    v->keyring_stamp_ = v->KeyringStampNow();
  } catch (...) {
    for (const char* name : {kConfigFileName, kKeyringFileName, kKeyringLockFileName,
                             kDirIvFileName, kAuditLogFileName}) {
      ::unlinkat(v->root_fd(), name, 0);
    }
    if (created_dir) ::rmdir(cipher_dir.c_str());
    throw;
  }
  return v;
}

std::unique_ptr<Volume> Volume::Open(const std::filesystem::path& cipher_dir,
                                     const MasterKeySource& source) {
  EnsureCryptoInitialized();
  std::unique_ptr<Volume> v(new Volume());
  v->cipher_dir_ = cipher_dir;
  v->root_fd_.reset(::open(cipher_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!v->root_fd_.valid()) ThrowSystemError("cannot open " + cipher_dir.string());
  v->config_ = VolumeConfig::LoadAt(v->root_fd(), cipher_dir);
  v->keyring_stamp_ = v->KeyringStampNow();
  KeyringFile file = KeyringFile::Read(v->root_fd(), cipher_dir);
  v->master_key_ = source.MasterKey(file.master_params(v->config_));
  v->keyring_ = file.Open(v->config_, v->master_key_);
  HostState(v->config_.volume_id)
      .CheckKeyringGeneration(v->keyring_.generation(), file.path().string());
  v->DeriveVolumeKeys();
  return v;
}

Volume::KeyringStamp Volume::KeyringStampNow() const {
  struct stat st {};
  if (::fstatat(root_fd(), kKeyringFileName, &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
  return KeyringStamp{st.st_ino, st.st_mtim};
}

Keyring Volume::LoadKeyring(const SecureBytes& master) const {
  KeyringFile file = KeyringFile::Read(root_fd(), cipher_dir_);
  Keyring keyring = file.Open(config_, master);
  HostState(config_.volume_id).CheckKeyringGeneration(keyring.generation(), file.path().string());
  return keyring;
}

void Volume::SaveKeyring(const Keyring& keyring, const SecureBytes& master) const {
  keyring.Save(root_fd(), cipher_dir_, config_, master);
  HostState(config_.volume_id)
      .CheckKeyringGeneration(keyring.generation(), (cipher_dir_ / kKeyringFileName).string());
  ::unlinkat(root_fd(), kStaleStagedKeyring, 0);
}

void Volume::DeriveVolumeKeys() {
  name_key_ = SecureBytes(kNameKeySize);
  HkdfSha256(keyring_.volume_key().span(), kNameKeyLabel, name_key_.mutable_span());
  xattr_key_ = DeriveKey(keyring_.volume_key().span(), kXattrKeyLabel);
  audit_key_ = DeriveKey(keyring_.volume_key().span(), kAuditKeyLabel);
}

Volume::KekCopy Volume::ActiveKek() const {
  std::shared_lock lock(keyring_mutex_);
  KekInfo info = keyring_.active();
  return KekCopy{info, keyring_.kek(info.id, info.version)->Clone()};
}

bool Volume::FindKek(uint32_t id, uint32_t version, SecureBytes& key_out) const {
  std::shared_lock lock(keyring_mutex_);
  const SecureBytes* kek = keyring_.kek(id, version);
  if (kek == nullptr) return false;
  key_out = kek->Clone();
  return true;
}

std::vector<KekInfo> Volume::Keks() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.keks();
}

uint64_t Volume::keyring_generation() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.generation();
}

VolumePolicy Volume::policy() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.policy();
}

MasterKeyParams Volume::master_params() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.master_params();
}

void Volume::ReloadKeyringIfChanged() {
  KeyringStamp now = KeyringStampNow();
  uint64_t current = 0;
  {
    std::shared_lock lock(keyring_mutex_);
    if (now == keyring_stamp_) return;
    current = keyring_.generation();
  }
  // Load outside the lock; a failed load (e.g. a half-edited file) keeps the current keyring.
  KeyringFile file = KeyringFile::Read(root_fd(), cipher_dir_);
  Keyring fresh = file.Open(config_, master_key_);
  if (fresh.generation() < current) {
    std::string what = "generation " + std::to_string(fresh.generation()) +
                       " is older than the loaded generation " + std::to_string(current) +
                       ": an old copy of the keyring was restored (rollback), refused";
    ReportTamper(file.path().string(), what);
    std::unique_lock lock(keyring_mutex_);
    keyring_stamp_ = now;  // reported once; the current keyring stays
    throw Error(ErrorKind::kConfig, file.path().string() + ": " + what);
  }
  HostState(config_.volume_id).CheckKeyringGeneration(fresh.generation(), file.path().string());
  std::unique_lock lock(keyring_mutex_);
  keyring_ = std::move(fresh);
  keyring_stamp_ = now;
}

void Volume::UpdateKeyring(const std::function<void(Keyring&)>& change) {
  std::unique_lock lock(keyring_mutex_);
  KeyringLock file_lock(root_fd(), cipher_dir_);
  Keyring fresh = LoadKeyring(master_key_);
  if (fresh.generation() < keyring_.generation()) {
    throw Error(ErrorKind::kConfig, (cipher_dir_ / kKeyringFileName).string() +
                                        ": older than the keyring this command loaded "
                                        "(rollback); refusing to change it");
  }
  change(fresh);
  fresh.set_generation(fresh.generation() + 1);
  SaveKeyring(fresh, master_key_);
  keyring_ = std::move(fresh);
  keyring_stamp_ = KeyringStampNow();
}

void Volume::ChangeMasterKey(const MasterKeySource& new_source) {
  std::unique_lock lock(keyring_mutex_);
  KeyringLock file_lock(root_fd(), cipher_dir_);
  // Re-read under the lock: a rotation that landed since this volume was opened is kept.
  Keyring fresh = LoadKeyring(master_key_);
  MasterKeyParams params = new_source.NewParams();
  SecureBytes new_master = new_source.MasterKey(params);
  fresh.set_master_params(params);
  fresh.set_generation(fresh.generation() + 1);
  SaveKeyring(fresh, new_master);
  keyring_ = std::move(fresh);
  master_key_ = std::move(new_master);
  keyring_stamp_ = KeyringStampNow();
}

}  // namespace envelopefs
