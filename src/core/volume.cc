// Volume — see volume.h.
#include "envelopefs/volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "envelopefs/beneath.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/file_format.h"
#include "envelopefs/host_state.h"
#include "envelopefs/keyring.h"
#include "envelopefs/log.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "keyring_wrap.h"

namespace envelopefs {

namespace {

constexpr char kNameKeyLabel[] = "envelopefs names v1";
constexpr char kXattrKeyLabel[] = "envelopefs xattr v1";
constexpr char kAuditKeyLabel[] = "envelopefs audit v1";
constexpr size_t kNameKeySize = 64;
// Left behind by an interrupted master-key change of envelopefs 0.1; never read again.
constexpr char kStaleStagedKeyring[] = "envelopefs.keyring.new";

// Removes the copies of the keyring that keyring changes killed between writing their temporary
// file and renaming it left at the root: ".envelopefs.tmp.*" regular files that begin like a
// keyring. They hold the wrapped KEKs of their time, under the master key of their time, so a
// version retired since, or a master key changed since, would live on in them. Called under the
// keyring lock, when no keyring writer is mid-way; other temporary files (directories being
// made, side files being written) do not begin like a keyring and are left alone.
void RemoveLeftoverKeyringCopies(int root_fd) {
  int raw = ::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) return;
  DIR* dir = ::fdopendir(raw);
  if (dir == nullptr) {
    ::close(raw);
    return;
  }
  const std::string_view headline = kKeyringHeadline;
  std::vector<std::string> copies;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind(kTempPrefix, 0) != 0) continue;
    UniqueFd fd(OpenRegularFileAt(root_fd, name, O_RDONLY));  // never a FIFO or device
    if (!fd.valid()) continue;
    std::string start(headline.size(), '\0');
    if (::pread(fd.get(), start.data(), start.size(), 0) == static_cast<ssize_t>(start.size()) &&
        start == headline) {
      copies.push_back(name);
    }
  }
  ::closedir(dir);
  for (const std::string& name : copies) ::unlinkat(root_fd, name.c_str(), 0);
}

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

// flock(LOCK_EX) for the lifetime of the object on two locks that serialise keyring changes:
// one in this host's state directory (out of the attacker's reach: deleting a lock file in the
// cipher dir cannot make two commands of this host race) and envelopefs.keyring.lock in the
// cipher dir (for other hosts sharing it). Whoever ignores both is caught by the check that the
// keyring did not change between reading and replacing it (see Volume::ReplaceKeyring).
class KeyringLock {
 public:
  KeyringLock(int root_fd, const std::filesystem::path& cipher_dir, const VolumeId& volume_id) {
    const std::filesystem::path host_dir = HostState::Directory();
    std::error_code ec;
    std::filesystem::create_directories(host_dir, ec);
    host_.reset(::open((host_dir / (ToHex(volume_id) + ".keyring.lock")).c_str(),
                       O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    Lock(host_.get());  // without host state there is nothing to lock here
    int fd = OpenRegularFileAt(root_fd, kKeyringLockFileName, O_RDWR, /*create=*/true, 0600);
    if (fd < 0) {
      errno = -fd;
      ThrowSystemError("cannot open " + (cipher_dir / kKeyringLockFileName).string());
    }
    volume_.reset(fd);
    Lock(volume_.get());
  }

 private:
  static void Lock(int fd) {
    if (fd < 0) return;
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) ThrowSystemError("cannot lock the keyring");
    }
  }
  UniqueFd host_, volume_;  // closing them releases the locks
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
    MasterKeyParams params = source.NewParams(c.volume_id);
    v->master_key_ = source.MasterKey(params, c.volume_id);
    v->unlocked_slot_ = 1;
    v->keyring_ =
        Keyring::CreateNew(c.created_unix, c.volume_id, params, v->master_key_, VolumePolicy{});
    v->DeriveVolumeKeys();
    if (!c.plaintext_names) {
      UniqueFd dirfd(::openat(v->root_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dirfd.valid()) ThrowSystemError("cannot open " + cipher_dir.string());
      NameTransform(v->name_key_, v->xattr_key_, false, c.format_version).InitDirIv(dirfd.get());
    }
    v->keyring_digest_ = v->keyring_.Save(v->root_fd(), cipher_dir, c);
    HostState(c.volume_id)
        .CheckKeyring(v->keyring_.Facts(v->keyring_digest_),
                      (cipher_dir / kKeyringFileName).string());
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
  KeyringFile::Unlocked unlocked = file.Unlock(v->config_, source);
  v->master_key_ = std::move(unlocked.master_key);
  v->unlocked_slot_ = unlocked.slot;
  v->keyring_ = v->Authenticate(file, unlocked.keyring_key);
  v->keyring_digest_ = file.digest();
  v->DeriveVolumeKeys();
  return v;
}

Volume::KeyringStamp Volume::KeyringStampNow() const {
  struct stat st {};
  if (::fstatat(root_fd(), kKeyringFileName, &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
  return KeyringStamp{st.st_ino, st.st_mtim};
}

Keyring Volume::Authenticate(const KeyringFile& file, const SecureBytes& keyring_key) const {
  Keyring keyring = file.Open(config_, keyring_key);
  HostState(config_.volume_id).CheckKeyring(keyring.Facts(file.digest()), file.path().string());
  return keyring;
}

SecureBytes Volume::KeyringKeyFor(const KeyringFile& file) const {
  if (auto key = file.UnwrapSlot(unlocked_slot_, master_key_)) return std::move(*key);
  return keyring_.keyring_key().Clone();
}

void Volume::ReplaceKeyring(Keyring& next, const std::string& read_digest) {
  // Under the lock, the file must still be the one this change was computed from: a writer
  // that ignored the lock (an older envelopefs, or a lock file deleted by an attacker) would
  // otherwise lose its change, or have ours lose its own.
  if (KeyringFile::Read(root_fd(), cipher_dir_).digest() != read_digest) {
    throw Error(ErrorKind::kState, (cipher_dir_ / kKeyringFileName).string() +
                                       " changed while this command ran; nothing was changed: "
                                       "run it again");
  }
  RemoveLeftoverKeyringCopies(root_fd());
  next.set_generation(next.generation() + 1);
  const std::string digest = next.Save(root_fd(), cipher_dir_, config_);
  HostState(config_.volume_id)
      .CheckKeyring(next.Facts(digest), (cipher_dir_ / kKeyringFileName).string());
  ::unlinkat(root_fd(), kStaleStagedKeyring, 0);
  keyring_digest_ = digest;
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

std::vector<MasterSlot> Volume::master_slots() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.slots();
}

std::vector<MasterKeyParams> Volume::pending_destroy() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_.pending_destroy();
}

bool Volume::keyring_current() const {
  std::shared_lock lock(keyring_mutex_);
  return keyring_current_;
}

void Volume::ReloadKeyringIfChanged(DamageReporter& reporter) {
  KeyringStamp now = KeyringStampNow();
  KeyringFacts current;
  {
    std::shared_lock lock(keyring_mutex_);
    if (now == keyring_stamp_) return;
    current = keyring_.Facts(keyring_digest_);
  }
  // Load outside the lock. A keyring that cannot be read with this volume's key (damaged, or
  // under another master key) leaves the current one in place, but no longer known to be the
  // newest: new files are refused until a newer keyring loads (keyring_current()).
  std::optional<KeyringFile> file;
  std::optional<Keyring> fresh;
  try {
    file.emplace(KeyringFile::Read(root_fd(), cipher_dir_));
    SecureBytes keyring_key;
    {
      std::shared_lock lock(keyring_mutex_);
      keyring_key = KeyringKeyFor(*file);
    }
    fresh.emplace(file->Open(config_, keyring_key));
  } catch (const Error&) {
    std::unique_lock lock(keyring_mutex_);
    keyring_current_ = false;
    throw;
  }
  KeyringFacts facts = fresh->Facts(file->digest());
  const bool same_contents = facts.digest == current.digest;
  if (auto problem = KeyringRegression(current, facts);
      !same_contents && (problem || facts.generation == 0)) {
    // A format-1 keyring never proves that it is newer (every one has generation 0).
    std::string what =
        (problem ? *problem + " than the loaded keyring" : std::string("a format-1 keyring")) +
        ": an old copy of the keyring was restored (rollback), refused";
    ReportDamage(reporter, {file->path().string(), std::nullopt, what});
    std::unique_lock lock(keyring_mutex_);
    keyring_stamp_ = now;  // reported once; the current (newer) keyring stays in force
    throw Error(ErrorKind::kConfig, file->path().string() + ": " + what);
  }
  try {
    // Also for the same contents as the loaded keyring: this host may have seen a newer one
    // since (written by envelopectl, then replaced by an old copy before this reload).
    HostState(config_.volume_id).CheckKeyring(facts, file->path().string());
  } catch (const Error& e) {
    ReportDamage(reporter, {file->path().string(), std::nullopt, e.what()});
    std::unique_lock lock(keyring_mutex_);
    keyring_stamp_ = now;
    keyring_current_ = false;  // neither this file nor the loaded keyring is the newest
    throw;
  }
  std::unique_lock lock(keyring_mutex_);
  keyring_ = std::move(*fresh);
  keyring_digest_ = facts.digest;
  keyring_stamp_ = now;
  keyring_current_ = true;
}

void Volume::UpdateKeyring(const std::function<void(Keyring&)>& change) { ChangeKeyring(change); }

void Volume::ChangeKeyring(const std::function<void(Keyring&)>& change) {
  std::unique_lock lock(keyring_mutex_);
  KeyringLock file_lock(root_fd(), cipher_dir_, config_.volume_id);
  // Re-read under the lock: a change that landed since this volume was opened is kept.
  KeyringFile file = KeyringFile::Read(root_fd(), cipher_dir_);
  Keyring fresh = Authenticate(file, KeyringKeyFor(file));
  change(fresh);
  ReplaceKeyring(fresh, file.digest());
  keyring_ = std::move(fresh);
  keyring_stamp_ = KeyringStampNow();
  keyring_current_ = true;
}

void Volume::ChangeMasterKey(const MasterKeySource& new_source) {
  // The new key first (it may ask on the terminal): never while holding the lock.
  MasterKeyParams params = new_source.NewParams(config_.volume_id);
  SecureBytes new_master = new_source.MasterKey(params, config_.volume_id);
  ChangeKeyring([&](Keyring& k) {
    k.ReplaceSlot(unlocked_slot_, params, new_master, static_cast<int64_t>(::time(nullptr)));
  });
  std::unique_lock lock(keyring_mutex_);
  master_key_ = std::move(new_master);
}

uint32_t Volume::AddMasterSlot(const MasterKeySource& source) {
  MasterKeyParams params = source.NewParams(config_.volume_id);
  SecureBytes master = source.MasterKey(params, config_.volume_id);
  uint32_t number = 0;
  ChangeKeyring([&](Keyring& k) {
    number = k.AddSlot(params, master, static_cast<int64_t>(::time(nullptr)));
  });
  return number;
}

void Volume::RemoveMasterSlot(uint32_t number) {
  ChangeKeyring([&](Keyring& k) {
    k.RemoveSlot(number);
    // The removed slot's secret opens every older copy of the keyring, which yields the keyring
    // key: renew it when the only slot left is this volume's own and still opens with the master
    // key this volume holds (other slots hold the key under master keys this process lacks).
    if (k.slots().size() != 1 || k.slots().front().number != unlocked_slot_) return;
    const MasterSlot mine = k.slots().front();
    auto held = keyring_wrap::UnwrapSlot(master_key_, config_.volume_id, mine.number, mine.wrapped);
    if (!held || !ConstantTimeEqual(held->span(), k.keyring_key().span())) return;
    k.ReplaceSlot(mine.number, mine.params, master_key_, mine.created_unix);
  });
}

std::vector<MasterKeyParams> Volume::ReplaceOnlyMasterSlot(
    const MasterKeySource& new_source, const std::function<void(Keyring&)>& change) {
  // Checked before the new key is made (which may create a key in the HSM or KMS).
  auto check_only_slot = [this](const Keyring& k) {
    if (k.slots().size() != 1 || k.slots().front().number != unlocked_slot_) {
      std::string others;
      for (const MasterSlot& s : k.slots()) {
        if (s.number == unlocked_slot_) continue;
        others += (others.empty() ? "" : ", ") + std::to_string(s.number) + " (" +
                  DescribeMasterKey(s.params) + ")";
      }
      throw Error(ErrorKind::kState,
                  "master slot " + others +
                      " would still open old copies of the keyring: remove it first (keys "
                      "remove-master), and add a new one after the retirement");
    }
  };
  {
    std::shared_lock lock(keyring_mutex_);
    check_only_slot(keyring_);
  }
  MasterKeyParams params = new_source.NewParams(config_.volume_id);
  SecureBytes new_master = new_source.MasterKey(params, config_.volume_id);
  std::vector<MasterKeyParams> pending;
  ChangeKeyring([&](Keyring& k) {
    check_only_slot(k);
    change(k);
    k.AddPendingDestroy(k.slots().front().params);
    k.ReplaceSlot(unlocked_slot_, params, new_master, static_cast<int64_t>(::time(nullptr)));
    pending = k.pending_destroy();
  });
  std::unique_lock lock(keyring_mutex_);
  master_key_ = std::move(new_master);
  return pending;
}

}  // namespace envelopefs
