// NameTransform: entry names, directory IVs, symlink targets and extended attributes in the
// cipher dir (see name_transform.h and the NAMES section of envelopefs-format(5)).
//
// AES-256-SIV comes from OpenSSL 3 (EVP); the wrapper below only sequences the EVP calls. Each
// element of the associated data is passed as a separate S2V component, in the order the format
// page gives. PKCS#7 padding hides name lengths to a multiple of 16 bytes.
#include "envelopefs/name_transform.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <utility>

#include "atomic_file.h"
#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/long_symlink.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume_config.h"

namespace envelopefs {
namespace {

// Associated data labels (the on-disk contract, envelopefs-format(5)).
constexpr std::string_view kNameLabel = "envelopefs name v1";
constexpr std::string_view kSymlinkLabel = "envelopefs symlink v1";           // format 1
constexpr std::string_view kSymlinkLabelV2 = "envelopefs symlink v2";         // format 2
constexpr std::string_view kLongSymlinkLabel = "envelopefs long symlink v1";  // side files
constexpr std::string_view kXattrNameLabel = "envelopefs xattr name v1";

// The first volume format with randomized symlink targets and object-bound xattr values.
constexpr uint32_t kVolumeFormatV2 = 2;
constexpr size_t kSymlinkNonceSize = 16;

constexpr size_t kSivKeySize = 64;
constexpr size_t kSivTagSize = 16;
constexpr size_t kPadBlock = 16;
constexpr size_t kMaxSideFileSize = 4096;
constexpr std::string_view kXattrUserPrefix = "user.";
constexpr std::string_view kInternalPrefix = ".envelopefs.";
constexpr std::string_view kVolumeFilePrefix = "envelopefs";
constexpr std::string_view kDirIvMarker = ".diriv";
constexpr std::string_view kAuditFilePrefix = "envelopefs.audit";

// --- AES-256-SIV (OpenSSL EVP) ---------------------------------------------------------------

const EVP_CIPHER* Aes256Siv() {
  // Fetched once: implicit fetching on every init is a measurable cost in OpenSSL 3.
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-SIV", nullptr);
  if (cipher == nullptr) ThrowOpenSslError("EVP_CIPHER_fetch(AES-256-SIV)");
  return cipher;
}

class CipherCtx {
 public:
  CipherCtx() : ctx_(EVP_CIPHER_CTX_new()) {
    if (ctx_ == nullptr) ThrowOpenSslError("EVP_CIPHER_CTX_new");
  }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx_); }
  CipherCtx(const CipherCtx&) = delete;
  CipherCtx& operator=(const CipherCtx&) = delete;
  EVP_CIPHER_CTX* get() const { return ctx_; }

 private:
  EVP_CIPHER_CTX* ctx_;
};

using AadList = std::initializer_list<std::span<const uint8_t>>;

int IntSize(size_t n) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorKind::kIo, "AES-SIV input too large");
  }
  return static_cast<int>(n);
}

// Feeds each AAD item as its own S2V component (EVP_CipherUpdate with a null output).
bool FeedAad(EVP_CIPHER_CTX* ctx, AadList aad) {
  for (std::span<const uint8_t> item : aad) {
    int len = 0;
    if (EVP_CipherUpdate(ctx, nullptr, &len, item.data(), IntSize(item.size())) != 1) {
      return false;
    }
  }
  return true;
}

// Returns tag(16) || ciphertext. `plaintext` must not be empty.
std::vector<uint8_t> SivSeal(std::span<const uint8_t> key, AadList aad,
                             std::span<const uint8_t> plaintext) {
  CipherCtx ctx;
  if (EVP_EncryptInit_ex2(ctx.get(), Aes256Siv(), key.data(), nullptr, nullptr) != 1) {
    ThrowOpenSslError("EVP_EncryptInit_ex2(AES-256-SIV)");
  }
  if (!FeedAad(ctx.get(), aad)) ThrowOpenSslError("AES-SIV associated data");
  std::vector<uint8_t> out(kSivTagSize + plaintext.size());
  int len = 0;
  if (EVP_EncryptUpdate(ctx.get(), out.data() + kSivTagSize, &len, plaintext.data(),
                        IntSize(plaintext.size())) != 1 ||
      static_cast<size_t>(len) != plaintext.size()) {
    ThrowOpenSslError("EVP_EncryptUpdate(AES-256-SIV)");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + kSivTagSize + len, &final_len) != 1 ||
      final_len != 0) {
    ThrowOpenSslError("EVP_EncryptFinal_ex(AES-256-SIV)");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kSivTagSize, out.data()) != 1) {
    ThrowOpenSslError("EVP_CTRL_AEAD_GET_TAG(AES-256-SIV)");
  }
  return out;
}

// Opens tag(16) || ciphertext; std::nullopt if it does not authenticate.
std::optional<std::vector<uint8_t>> SivOpen(std::span<const uint8_t> key, AadList aad,
                                            std::span<const uint8_t> sealed) {
  if (sealed.size() <= kSivTagSize) return std::nullopt;
  std::span<const uint8_t> tag = sealed.first(kSivTagSize);
  std::span<const uint8_t> ciphertext = sealed.subspan(kSivTagSize);
  CipherCtx ctx;
  if (EVP_DecryptInit_ex2(ctx.get(), Aes256Siv(), key.data(), nullptr, nullptr) != 1) {
    ThrowOpenSslError("EVP_DecryptInit_ex2(AES-256-SIV)");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kSivTagSize,
                          const_cast<uint8_t*>(tag.data())) != 1) {
    ThrowOpenSslError("EVP_CTRL_AEAD_SET_TAG(AES-256-SIV)");
  }
  if (!FeedAad(ctx.get(), aad)) ThrowOpenSslError("AES-SIV associated data");
  std::vector<uint8_t> plain(ciphertext.size());
  int len = 0;
  int final_len = 0;
  bool ok = EVP_DecryptUpdate(ctx.get(), plain.data(), &len, ciphertext.data(),
                              IntSize(ciphertext.size())) == 1 &&
            static_cast<size_t>(len) == ciphertext.size() &&
            EVP_DecryptFinal_ex(ctx.get(), plain.data() + len, &final_len) == 1 && final_len == 0;
  if (!ok) {
    ERR_clear_error();  // an authentication failure is an expected outcome, not an error
    return std::nullopt;
  }
  return plain;
}

// --- padding and encoding --------------------------------------------------------------------

std::vector<uint8_t> Pad(std::string_view text) {
  size_t pad = kPadBlock - text.size() % kPadBlock;  // 1..16
  std::vector<uint8_t> out(text.begin(), text.end());
  out.insert(out.end(), pad, static_cast<uint8_t>(pad));
  return out;
}

std::optional<std::string> Unpad(const std::vector<uint8_t>& padded) {
  if (padded.empty() || padded.size() % kPadBlock != 0) return std::nullopt;
  size_t pad = padded.back();
  if (pad == 0 || pad > kPadBlock) return std::nullopt;
  for (size_t i = padded.size() - pad; i < padded.size(); ++i) {
    if (padded[i] != pad) return std::nullopt;
  }
  return std::string(padded.begin(), padded.end() - static_cast<std::ptrdiff_t>(pad));
}

// Decodes unpadded base64url, refusing every text that is not the canonical encoding.
std::optional<std::vector<uint8_t>> DecodeCanonical(std::string_view text) {
  auto bytes = FromBase64Url(text);
  if (!bytes || ToBase64Url(*bytes) != text) return std::nullopt;
  return bytes;
}

std::string SealText(std::span<const uint8_t> key, AadList aad, std::string_view text) {
  return ToBase64Url(SivSeal(key, aad, Pad(text)));
}

std::optional<std::string> OpenText(std::span<const uint8_t> key, AadList aad,
                                    std::string_view encoded) {
  auto sealed = DecodeCanonical(encoded);
  if (!sealed) return std::nullopt;
  auto padded = SivOpen(key, aad, *sealed);
  if (!padded) return std::nullopt;
  return Unpad(*padded);
}

// --- name rules ------------------------------------------------------------------------------

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A name a directory entry may have: not empty, ".", "..", and no '/' or NUL.
bool IsValidEntryName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string_view::npos;
}

// "envelopefs.diriv" and its sync-conflict copies ("envelopefs*.diriv*").
bool IsDirIvName(std::string_view name) {
  return StartsWith(name, kVolumeFilePrefix) && name.find(kDirIvMarker) != std::string_view::npos;
}

// The volume files at the root, and their temp and conflict copies.
bool IsVolumeFileName(std::string_view name) {
  return StartsWith(name, kConfigFileName) || StartsWith(name, kKeyringFileName) ||
         StartsWith(name, kAuditFilePrefix);
}

std::string LongNameFor(std::string_view cipher_name) {
  Sha256Digest digest = Sha256(AsBytes(cipher_name));
  return kLongNamePrefix + ToBase64Url(digest);
}

std::string SideFileName(std::string_view backing_name) {
  return std::string(backing_name) + kLongNameSuffix;
}

// Opens `name` in `dirfd` without following symlinks; -errno on failure.
int OpenInDir(int dirfd, const std::string& name) {
  // O_NONBLOCK: a FIFO planted under an IV or side-file name must not hang the caller (the
  // read that follows refuses anything but a regular file).
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

// The 16-byte IV in `name`, or std::nullopt if it is missing or not exactly 16 bytes.
// Sets *error to the errno of a failed open (0 otherwise).
std::optional<DirIv> ReadIvFile(int dirfd, const std::string& name, int* error) {
  *error = 0;
  int fd = OpenInDir(dirfd, name);
  if (fd < 0) {
    *error = -fd;
    return std::nullopt;
  }
  UniqueFd owned(fd);
  auto data = ReadSmallFileAt(fd, kDirIvSize);
  if (!data || data->size() != kDirIvSize) return std::nullopt;
  DirIv iv;
  std::copy(data->begin(), data->end(), iv.begin());
  return iv;
}

// The names of the sync-conflict copies of the IV file in `dirfd`.
std::vector<std::string> ListConflictIvFiles(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowSystemError("open directory to scan for IV copies");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    ThrowSystemError("fdopendir");
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (IsDirIvName(name) && name != kDirIvFileName) names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());  // a stable order for the alternates
  return names;
}

// Writes a fresh random IV file into `dirfd`; 0 or -errno. Never replaces an existing IV.
int WriteNewDirIv(int dirfd) {
  DirIv iv;
  RandomBytes(iv);
  return WriteFileAtomicallyAt(dirfd, kDirIvFileName, iv, 0444, /*no_replace=*/true);
}

// Removes a half-made temp directory `temp` (open as `fd`) from `parent_fd`.
void RemoveTempDirectory(int parent_fd, const std::string& temp, int fd) {
  ::fchmod(fd, 0700);  // the requested mode may lack write permission
  ::unlinkat(fd, kDirIvFileName, 0);
  ::unlinkat(parent_fd, temp.c_str(), AT_REMOVEDIR);
}

}  // namespace

NameTransform::NameTransform(const SecureBytes& name_key, const SecureBytes& xattr_key,
                             bool plaintext_names, uint32_t volume_format)
    : name_key_(name_key.Clone()),
      xattr_key_(xattr_key.Clone()),
      plaintext_(plaintext_names),
      format_(volume_format) {
  // The name key is needed in plaintext-names mode too: xattr names are always encrypted.
  if (name_key_.size() != kSivKeySize) {
    throw std::invalid_argument("NameTransform: the name key must be 64 bytes");
  }
  if (xattr_key_.size() != kKeySize) {
    throw std::invalid_argument("NameTransform: the xattr key must be 32 bytes");
  }
  if (format_ == 0) throw std::invalid_argument("NameTransform: volume format 0");
}

// --- directories -----------------------------------------------------------------------------

DirIvs NameTransform::ReadDirIvs(int dirfd) const {
  DirIvs ivs;
  if (plaintext_) return ivs;
  int error = 0;
  auto primary = ReadIvFile(dirfd, kDirIvFileName, &error);
  if (!primary) {
    if (error != 0 && error != ENOENT && error != ELOOP) {
      errno = error;
      ThrowSystemError(std::string("open ") + kDirIvFileName);
    }
    throw Error(ErrorKind::kAuthentication, "directory IV file missing or damaged");
  }
  ivs.primary = *primary;
  for (const std::string& name : ListConflictIvFiles(dirfd)) {
    auto alternate = ReadIvFile(dirfd, name, &error);
    if (!alternate && (error == EMFILE || error == ENFILE || error == ENOMEM)) {
      // Out of resources, not a bad copy: skipping it would lose its names for good (the
      // daemon caches a directory's IVs). The caller may try again (the daemon does on EMFILE).
      errno = error;
      ThrowSystemError("open a copy of the directory IV file");
    }
    if (!alternate || *alternate == ivs.primary) continue;
    if (std::find(ivs.alternates.begin(), ivs.alternates.end(), *alternate) !=
        ivs.alternates.end()) {
      continue;
    }
    ivs.alternates.push_back(*alternate);
  }
  return ivs;
}

void NameTransform::InitDirIv(int dirfd) const {
  if (plaintext_) return;
  if (int rc = WriteNewDirIv(dirfd); rc < 0) {
    errno = -rc;
    ThrowSystemError(std::string("write ") + kDirIvFileName);
  }
}

int NameTransform::MakeDirectory(int parent_fd, const std::string& backing_name,
                                 mode_t mode) const {
  if (plaintext_) return ::mkdirat(parent_fd, backing_name.c_str(), mode) == 0 ? 0 : -errno;
  try {
    std::string temp = RandomTempName();
    if (::mkdirat(parent_fd, temp.c_str(), 0700) != 0) return -errno;
    int raw = ::openat(parent_fd, temp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (raw < 0) {
      int rc = -errno;
      ::unlinkat(parent_fd, temp.c_str(), AT_REMOVEDIR);
      return rc;
    }
    UniqueFd fd(raw);
    int rc = WriteNewDirIv(fd.get());
    if (rc == 0 && ::fchmod(fd.get(), mode & 07777) != 0) rc = -errno;
    if (rc == 0 && ::renameat2(parent_fd, temp.c_str(), parent_fd, backing_name.c_str(),
                               RENAME_NOREPLACE) != 0) {
      rc = -errno;
    }
    if (rc != 0) RemoveTempDirectory(parent_fd, temp, fd.get());
    return rc;
  } catch (const Error&) {
    return -EIO;
  }
}

// --- entry names -----------------------------------------------------------------------------

std::optional<std::string> NameTransform::ToBacking(const DirIv& iv, std::string_view name,
                                                    bool in_root) const {
  if (!IsValidEntryName(name) || name.size() > kMaxNameLength) return std::nullopt;
  if (plaintext_) {
    if (IsInternal(name, in_root)) return std::nullopt;
    return std::string(name);
  }
  std::string cipher = SealText(name_key_.span(), {AsBytes(kNameLabel), iv}, name);
  if (cipher.size() > kMaxBackingNameLength) return LongNameFor(cipher);
  return cipher;
}

bool NameTransform::IsLongName(std::string_view backing_name) {
  return StartsWith(backing_name, kLongNamePrefix) && !EndsWith(backing_name, kLongNameSuffix);
}

int NameTransform::WriteLongNameSideFile(int dirfd, const DirIv& iv, std::string_view name,
                                         std::string_view backing_name) const {
  // Plaintext mode has no side files: "envelopefs.long.x" is then an ordinary user name.
  if (plaintext_ || !IsLongName(backing_name)) return 0;
  if (!IsValidEntryName(name) || name.size() > kMaxNameLength) return -EINVAL;
  try {
    std::string cipher = SealText(name_key_.span(), {AsBytes(kNameLabel), iv}, name);
    if (cipher.size() <= kMaxBackingNameLength || LongNameFor(cipher) != backing_name) {
      return -EINVAL;  // `backing_name` is not the long form of `name` under `iv`
    }
    // The content is deterministic, so replacing an existing side file is harmless.
    return WriteFileAtomicallyAt(dirfd, SideFileName(backing_name), AsBytes(cipher), 0444,
                                 /*no_replace=*/false);
  } catch (const Error&) {
    return -EIO;
  }
}

int NameTransform::RemoveLongNameSideFile(int dirfd, std::string_view backing_name) const {
  if (plaintext_ || !IsLongName(backing_name)) return 0;
  if (::unlinkat(dirfd, SideFileName(backing_name).c_str(), 0) == 0 || errno == ENOENT) return 0;
  return -errno;
}

bool NameTransform::IsInternal(std::string_view backing_name, bool in_root) const {
  if (StartsWith(backing_name, kInternalPrefix)) return true;  // includes kTempPrefix
  if (in_root && IsVolumeFileName(backing_name)) return true;
  if (plaintext_) return false;  // only the volume files and ".envelopefs." are reserved
  if (in_root && StartsWith(backing_name, kLongSymlinkPrefix)) return true;
  return IsDirIvName(backing_name) ||
         (StartsWith(backing_name, kLongNamePrefix) && EndsWith(backing_name, kLongNameSuffix));
}

std::optional<std::string> NameTransform::FromBacking(int dirfd, const DirIvs& ivs,
                                                      std::string_view backing_name) const {
  if (plaintext_) {
    if (!IsValidEntryName(backing_name) || IsInternal(backing_name, false)) return std::nullopt;
    return std::string(backing_name);
  }
  std::string cipher(backing_name);
  if (IsLongName(backing_name)) {
    int fd = OpenInDir(dirfd, SideFileName(backing_name));
    if (fd < 0) return std::nullopt;
    UniqueFd owned(fd);
    auto content = ReadSmallFileAt(fd, kMaxSideFileSize);
    if (!content) return std::nullopt;
    cipher.assign(content->begin(), content->end());
    // Only the canonical form: a cipher name that fits is never stored as a long name.
    if (cipher.size() <= kMaxBackingNameLength || LongNameFor(cipher) != backing_name) {
      return std::nullopt;
    }
  }
  if (cipher.find('.') != std::string::npos) return std::nullopt;  // not base64url
  auto sealed = DecodeCanonical(cipher);
  if (!sealed) return std::nullopt;
  auto try_iv = [&](const DirIv& iv) -> std::optional<std::string> {
    auto padded = SivOpen(name_key_.span(), {AsBytes(kNameLabel), iv}, *sealed);
    if (!padded) return std::nullopt;
    auto name = Unpad(*padded);
    if (!name || !IsValidEntryName(*name) || name->size() > kMaxNameLength) return std::nullopt;
    return name;
  };
  if (auto name = try_iv(ivs.primary)) return name;
  for (const DirIv& iv : ivs.alternates) {
    if (auto name = try_iv(iv)) return name;
  }
  return std::nullopt;
}

// --- symlink targets -------------------------------------------------------------------------

std::string NameTransform::EncryptSymlink(std::string_view target) const {
  if (plaintext_) return std::string(target);
  if (format_ < kVolumeFormatV2) {
    return SealText(name_key_.span(), {AsBytes(kSymlinkLabel)}, target);
  }
  // base64url(nonce(16) || SIV(name key, [label, nonce], padded target)): equal targets differ.
  std::array<uint8_t, kSymlinkNonceSize> nonce;
  RandomBytes(nonce);
  std::vector<uint8_t> sealed =
      SivSeal(name_key_.span(), {AsBytes(kSymlinkLabelV2), nonce}, Pad(target));
  std::vector<uint8_t> stored(nonce.begin(), nonce.end());
  stored.insert(stored.end(), sealed.begin(), sealed.end());
  return ToBase64Url(stored);
}

std::optional<std::string> NameTransform::DecryptSymlink(std::string_view stored) const {
  if (plaintext_) return std::string(stored);
  std::optional<std::string> target;
  if (format_ < kVolumeFormatV2) {
    target = OpenText(name_key_.span(), {AsBytes(kSymlinkLabel)}, stored);
  } else {
    auto bytes = DecodeCanonical(stored);
    if (!bytes || bytes->size() <= kSymlinkNonceSize) return std::nullopt;
    std::span<const uint8_t> all(*bytes);
    std::span<const uint8_t> nonce = all.first(kSymlinkNonceSize);
    auto padded = SivOpen(name_key_.span(), {AsBytes(kSymlinkLabelV2), nonce},
                          all.subspan(kSymlinkNonceSize));
    if (padded) target = Unpad(*padded);
  }
  if (!target || target->empty() || target->find('\0') != std::string::npos) return std::nullopt;
  return target;
}

bool NameTransform::SymlinkFitsInline(size_t target_size) const {
  if (plaintext_) return target_size < PATH_MAX;
  size_t sealed = kSivTagSize + (target_size / kPadBlock + 1) * kPadBlock;
  if (format_ >= kVolumeFormatV2) sealed += kSymlinkNonceSize;
  return (sealed * 4 + 2) / 3 < PATH_MAX;  // unpadded base64url
}

std::vector<uint8_t> NameTransform::SealLongSymlink(std::span<const uint8_t> id,
                                                    std::string_view target) const {
  return SivSeal(name_key_.span(), {AsBytes(kLongSymlinkLabel), id}, Pad(target));
}

std::optional<std::string> NameTransform::OpenLongSymlink(std::span<const uint8_t> id,
                                                          std::span<const uint8_t> sealed) const {
  auto padded = SivOpen(name_key_.span(), {AsBytes(kLongSymlinkLabel), id}, sealed);
  if (!padded) return std::nullopt;
  auto target = Unpad(*padded);
  if (!target || target->empty() || target->find('\0') != std::string::npos) return std::nullopt;
  return target;
}

// --- extended attributes ---------------------------------------------------------------------

std::optional<std::string> NameTransform::ToBackingXattrName(std::string_view name) const {
  if (!StartsWith(name, kXattrUserPrefix) || name.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = name.substr(kXattrUserPrefix.size());
  return std::string(kXattrUserPrefix) +
         SealText(name_key_.span(), {AsBytes(kXattrNameLabel)}, rest);
}

std::optional<std::string> NameTransform::FromBackingXattrName(std::string_view backing) const {
  if (!StartsWith(backing, kXattrUserPrefix)) return std::nullopt;
  auto rest = OpenText(name_key_.span(), {AsBytes(kXattrNameLabel)},
                       backing.substr(kXattrUserPrefix.size()));
  if (!rest || rest->find('\0') != std::string::npos) return std::nullopt;
  return std::string(kXattrUserPrefix) + *rest;
}

bool NameTransform::BindsXattrsToObjects() const { return format_ >= kVolumeFormatV2; }

std::optional<XattrOwnerId> NameTransform::DirectoryXattrOwner(const DirIvs& ivs) const {
  if (plaintext_) return std::nullopt;  // no directory IVs
  static_assert(kXattrOwnerIdSize == kDirIvSize);
  return ivs.primary;
}

std::vector<uint8_t> NameTransform::XattrAad(std::string_view backing_name,
                                             const std::optional<XattrOwnerId>& owner) const {
  // Format 1: the backing attribute name. Format 2: the name || 0x00 || the owner's 16 bytes,
  // if it has any (envelopefs-format(5)); an attribute name never holds a NUL, so the split is
  // unambiguous.
  std::vector<uint8_t> aad(backing_name.begin(), backing_name.end());
  if (BindsXattrsToObjects()) {
    aad.push_back(0);
    if (owner) aad.insert(aad.end(), owner->begin(), owner->end());
  }
  return aad;
}

std::vector<uint8_t> NameTransform::SealXattrValue(std::string_view backing_name,
                                                   const std::optional<XattrOwnerId>& owner,
                                                   std::span<const uint8_t> value) const {
  const std::vector<uint8_t> aad = XattrAad(backing_name, owner);
  std::vector<uint8_t> out(kGcmNonceSize + value.size() + kGcmTagSize);
  GcmNonce nonce = RandomNonce();
  std::copy(nonce.begin(), nonce.end(), out.begin());
  std::span<uint8_t> body(out);
  ThreadAead().Seal(xattr_key_.span(), nonce, aad, value, body.subspan(kGcmNonceSize, value.size()),
                    body.subspan(kGcmNonceSize + value.size()).first<kGcmTagSize>());
  return out;
}

std::optional<std::vector<uint8_t>> NameTransform::OpenXattrValue(
    std::string_view backing_name, const std::optional<XattrOwnerId>& owner,
    std::span<const uint8_t> sealed) const {
  if (sealed.size() < kGcmNonceSize + kGcmTagSize) return std::nullopt;
  const std::vector<uint8_t> aad = XattrAad(backing_name, owner);
  size_t size = sealed.size() - kGcmNonceSize - kGcmTagSize;
  std::vector<uint8_t> plain(size);
  if (!ThreadAead().Open(xattr_key_.span(), sealed.first<kGcmNonceSize>(), aad,
                         sealed.subspan(kGcmNonceSize, size), sealed.last<kGcmTagSize>(), plain)) {
    return std::nullopt;
  }
  return plain;
}

}  // namespace envelopefs
