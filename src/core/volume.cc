// Volume — see volume.h.
#include "envelopefs/volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "envelopefs/crypto.h"
#include "envelopefs/error.h"
#include "envelopefs/file_format.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {

namespace {

constexpr char kNameKeyLabel[] = "envelopefs names v1";
constexpr char kXattrKeyLabel[] = "envelopefs xattr v1";
constexpr size_t kNameKeySize = 64;

bool IsEmptyDirectory(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_empty(dir, ec) && !ec;
}

void ValidateChunkSize(uint32_t chunk_size) {
  if (chunk_size < format::kMinChunkSize || chunk_size > format::kMaxChunkSize ||
      chunk_size % format::kMinChunkSize != 0) {
    throw Error(ErrorKind::kUsage, "invalid chunk size " + std::to_string(chunk_size) +
                                       ": must be a multiple of 4 KiB from 4 KiB to 1 MiB");
  }
}

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
    RandomBytes(c.volume_id);
    c.chunk_size = chunk_size;
    c.plaintext_names = options.plaintext_names;
    c.created_unix = static_cast<int64_t>(::time(nullptr));
    c.audit_log = kDefaultAuditLogName;
    source.PrepareNewVolume(c);
    v->master_key_ = source.MasterKey(c);
    v->keyring_ = Keyring::CreateNew(c.created_unix);
    v->DeriveVolumeKeys();
    if (!c.plaintext_names) {
      UniqueFd dirfd(::open(cipher_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dirfd.valid()) ThrowSystemError("cannot open " + cipher_dir.string());
      NameTransform(v->name_key_, v->xattr_key_, false).InitDirIv(dirfd.get());
    }
    v->keyring_.Save(cipher_dir, c, v->master_key_);
    c.Save(cipher_dir);  // last: a volume without a config is clearly unfinished
    ::chmod(cipher_dir.c_str(), 0700);
    v->keyring_stamp_ = v->KeyringStampNow();
  } catch (...) {
    for (const char* name :
         {kConfigFileName, kKeyringFileName, kDirIvFileName, kDefaultAuditLogName}) {
      ::unlink((cipher_dir / name).c_str());
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
  v->config_ = VolumeConfig::Load(cipher_dir);
  v->master_key_ = source.MasterKey(v->config_);
  v->LoadKeyring();
  v->DeriveVolumeKeys();
  return v;
}

Volume::KeyringStamp Volume::KeyringStampNow() const {
  struct stat st {};
  if (::stat((cipher_dir_ / kKeyringFileName).c_str(), &st) != 0) return {};
  return KeyringStamp{st.st_ino, st.st_mtim};
}

void Volume::LoadKeyring() {
  const std::filesystem::path staged = cipher_dir_ / kKeyringNewFileName;
  if (::access(staged.c_str(), F_OK) == 0) {
    try {
      keyring_ = Keyring::LoadFile(staged, config_, master_key_);
      if (::rename(staged.c_str(), (cipher_dir_ / kKeyringFileName).c_str()) != 0) {
        ThrowSystemError("cannot complete the master key change");
      }
      keyring_stamp_ = KeyringStampNow();
      return;
    } catch (const Error&) {
      // Not (yet) valid for this config and key: the main keyring is authoritative.
    }
  }
  keyring_stamp_ = KeyringStampNow();
  keyring_ = Keyring::Load(cipher_dir_, config_, master_key_);
}

void Volume::DeriveVolumeKeys() {
  name_key_ = SecureBytes(kNameKeySize);
  HkdfSha256(keyring_.volume_key().span(), kNameKeyLabel, name_key_.mutable_span());
  xattr_key_ = DeriveKey(keyring_.volume_key().span(), kXattrKeyLabel);
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

void Volume::ReloadKeyringIfChanged() {
  KeyringStamp now = KeyringStampNow();
  {
    std::shared_lock lock(keyring_mutex_);
    if (now == keyring_stamp_) return;
  }
  // Load outside the lock; a failed load (e.g. a half-edited file) keeps the current keyring.
  Keyring fresh = Keyring::Load(cipher_dir_, config_, master_key_);
  std::unique_lock lock(keyring_mutex_);
  keyring_ = std::move(fresh);
  keyring_stamp_ = now;
}

void Volume::UpdateKeyring(const std::function<void(Keyring&)>& change) {
  std::unique_lock lock(keyring_mutex_);
  Keyring fresh = Keyring::Load(cipher_dir_, config_, master_key_);
  change(fresh);
  fresh.Save(cipher_dir_, config_, master_key_);
  keyring_ = std::move(fresh);
  keyring_stamp_ = KeyringStampNow();
}

void Volume::ChangeMasterKey(const MasterKeySource& new_source) {
  std::unique_lock lock(keyring_mutex_);
  VolumeConfig fresh_config = config_;
  new_source.PrepareNewVolume(fresh_config);
  SecureBytes new_master = new_source.MasterKey(fresh_config);
  // The keyring MAC covers the config's key-source fields, so config and keyring change
  // together: stage the new keyring, replace the config, then rename the keyring into place.
  // A crash in between leaves a staged keyring that LoadKeyring() completes when the new key
  // opens it; the old key keeps opening the old keyring until the config changes.
  keyring_.SaveFile(cipher_dir_ / kKeyringNewFileName, fresh_config, new_master);
  fresh_config.Save(cipher_dir_);
  if (::rename((cipher_dir_ / kKeyringNewFileName).c_str(),
               (cipher_dir_ / kKeyringFileName).c_str()) != 0) {
    ThrowSystemError("cannot replace keyring");
  }
  UniqueFd dirfd(::open(cipher_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd.valid() || ::fsync(dirfd.get()) != 0)
    ThrowSystemError("cannot sync " + cipher_dir_.string());
  config_ = fresh_config;
  master_key_ = std::move(new_master);
  keyring_stamp_ = KeyringStampNow();
}

}  // namespace envelopefs
