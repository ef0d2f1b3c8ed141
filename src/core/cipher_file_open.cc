// CipherFile, creating and opening: the header, the newest state record and (format 2) the
// chunk index, checked against each other and the file's length. See cipher_file.h.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "cipher_file_internal.h"
#include "envelopefs/beneath.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/volume.h"
#include "header_lock.h"
#include "kept_times.h"

namespace envelopefs {
namespace {

using namespace format;

// Many small reads at scattered offsets (index blocks, chunk tags) on a cold cache: each batch
// is announced to the kernel (POSIX_FADV_WILLNEED) before it is read, so the disk serves the
// batch in parallel instead of one read at a time. Batches bound the memory it takes.
class ReadAhead {
 public:
  explicit ReadAhead(int fd) : fd_(fd) {}
  // Queues a read of `len` bytes at `offset` for item `id`; runs `read` on a full batch.
  template <typename F>
  void Add(uint64_t offset, uint64_t len, uint64_t id, F&& read) {
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
    batch_.emplace_back(offset, id);
    if (batch_.size() == kBatch) Finish(read);
  }
  // Runs read(offset, id) for every queued item, in order.
  template <typename F>
  void Finish(F&& read) {
    for (const auto& [offset, id] : batch_) read(offset, id);
    batch_.clear();
  }

 private:
  static constexpr size_t kBatch = 1024;
  int fd_;
  std::vector<std::pair<uint64_t, uint64_t>> batch_;
};

}  // namespace

CipherFile::CipherFile(UniqueFd fd, const Volume& volume, DamageReporter& reporter,
                       const FixedHeader& fixed, FileKeys keys, uint64_t key_generation,
                       std::string name)
    : fd_(std::move(fd)),
      volume_(volume),
      reporter_(reporter),
      file_id_(fixed.file_id),
      name_(std::move(name)),
      fixed_(fixed),
      layout_(ChunkLayout::Of(fixed)),
      keys_(std::move(keys)),
      key_generation_(key_generation) {}

NewHeader BuildNewHeader(const Volume& volume, uint32_t chunk_size, const FileId& file_id,
                         uint64_t key_generation) {
  if (!volume.keyring_current()) {
    throw Error(ErrorKind::kKeyUnavailable,
                "the keyring on disk changed and cannot be read with this mount's master key "
                "(a change of master key?): new files are refused, remount with the new key");
  }
  Volume::KekCopy kek = volume.ActiveKek();
  SecureBytes dek = SecureBytes::Random(kKeySize);
  return NewHeader{
      BuildHeader(chunk_size, file_id, dek, kek.info.id, kek.info.version, kek.key, key_generation),
      FileKeys::Derive(dek)};
}

std::shared_ptr<CipherFile> CipherFile::Create(UniqueFd fd, const Volume& volume,
                                               std::string display_name, DamageReporter& reporter) {
  FileId file_id;
  RandomBytes(file_id);
  NewHeader header = BuildNewHeader(volume, volume.config().chunk_size, file_id, 1);
  std::shared_ptr<CipherFile> file(
      new CipherFile(std::move(fd), volume, reporter, ParseFixedHeader(header.bytes),
                     std::move(header.keys), 1, std::move(display_name)));
  if (int rc = file->PwriteAll(header.bytes.data(), header.bytes.size(), 0); rc < 0) {
    errno = -rc;
    ThrowSystemError("writing the header of " + file->name_);
  }
  file->disk_state_ = EmptyFileState(2);
  file->dirty_ = true;  // a new file is sealed after its first close, even if left empty
  return file;
}

std::shared_ptr<CipherFile> CipherFile::Open(UniqueFd fd, const Volume& volume,
                                             std::string display_name, DamageReporter& reporter) {
  HeaderRead header = ReadHeader(fd.get());
  if (header.status != HeaderStatus::kOk) {
    if (header.status != HeaderStatus::kUnreadable) {
      ReportDamage(reporter, {FdPath(fd.get(), display_name), std::nullopt, header.reason});
    }
    throw Error(header.status == HeaderStatus::kUnreadable ? ErrorKind::kIo : ErrorKind::kFormat,
                Named(display_name, header.reason));
  }
  OpenedHeader opened = OpenHeader(header, volume, /*check_length=*/false);
  if (!opened.ok) {
    if (opened.kind == ErrorKind::kAuthentication) {
      ReportDamage(reporter, {FdPath(fd.get(), display_name), std::nullopt, opened.problem});
    }
    throw Error(opened.kind, Named(display_name, opened.problem));
  }
  // The generation of a slot that does not open is not authenticated: only opening ones count.
  uint64_t generation = 0;
  for (int i = 0; i < 2; ++i) {
    if (opened.slot_opens[i]) generation = std::max(generation, header.slots[i].generation);
  }
  std::shared_ptr<CipherFile> file(new CipherFile(std::move(fd), volume, reporter, header.fixed,
                                                  FileKeys::Derive(opened.dek), generation,
                                                  std::move(display_name)));
  file->slot_opens_[0] = opened.slot_opens[0];
  file->slot_opens_[1] = opened.slot_opens[1];
  file->disk_state_ = opened.state;
  if (!opened.note.empty()) {
    ReportCopyDamaged(reporter, {file->CurrentName(), std::nullopt, opened.note});
  }
  const bool sealed = opened.state.sealed();
  if (sealed) {
    if (auto problem = LengthProblem(header, &opened.state)) {
      ReportDamage(reporter, {file->CurrentName(), std::nullopt, *problem});
      throw Error(ErrorKind::kAuthentication, Named(file->name_, *problem));
    }
    file->size_ = opened.state.size;
  } else {
    // Unsealed: the file was being written when the daemon stopped, or an older state was put
    // back. Its length and chunk versions are not authenticated; a torn last chunk is left out.
    ReportUnsealed(reporter, FdPath(file->fd(), file->name_));
    file->size_ = opened.plain_size ? *opened.plain_size
                                    : header.layout().ReportedPlainSize(header.cipher_size);
  }
  if (file->indexed()) {
    const int access = ::fcntl(file->fd(), F_GETFL) & O_ACCMODE;
    file->LoadIndex(sealed, access != O_RDONLY);
  }
  return file;
}

void CipherFile::ForEachDataRegion(uint64_t from, uint64_t to,
                                   const std::function<void(uint64_t, uint64_t)>& visit) const {
  uint64_t pos = from;
  while (pos < to) {
    off_t data = ::lseek(fd_.get(), static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return;  // only holes from here on
      visit(pos, to);              // the file system cannot tell: all of it
      return;
    }
    if (static_cast<uint64_t>(data) >= to) return;
    off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
    const uint64_t end = hole < 0 ? to : std::min<uint64_t>(to, static_cast<uint64_t>(hole));
    visit(static_cast<uint64_t>(data), end);
    pos = end;
  }
}

void CipherFile::ReadInlineTags(uint64_t first, uint64_t end) {
  // The tags stored with chunks [first, end): in one read when they are close together, else
  // one small read per chunk, skipping the holes of a sparse file.
  if (first >= end) return;
  const uint64_t lo = layout_.ChunkOffset(first);
  const uint64_t hi =
      layout_.ChunkOffset(end - 1) + layout_.ChunkLength(end - 1, size_) + kChunkOverhead;
  auto tag_offset = [&](uint64_t i) {
    return layout_.ChunkOffset(i) + kChunkNonceSize + layout_.ChunkLength(i, size_);
  };
  constexpr uint64_t kOneRead = 1 << 20;
  if (hi - lo <= kOneRead) {
    std::vector<uint8_t> span(hi - lo);
    if (PreadAll(span.data(), span.size(), lo) == 0) {
      ChunkTag tag;
      for (uint64_t i = first; i < end; ++i) {
        std::memcpy(tag.data(), span.data() + (tag_offset(i) - lo), kChunkTagSize);
        tags_.Set(i, tag);
      }
      return;
    }
  }
  ReadAhead ahead(fd_.get());
  ChunkTag tag;
  auto read_tag = [&](uint64_t offset, uint64_t i) {
    if (PreadAll(tag.data(), kChunkTagSize, offset) < 0) tag = ChunkTag{};
    tags_.Set(i, tag);  // an unreadable tag makes the chunk fail when read
  };
  ForEachDataRegion(lo, hi, [&](uint64_t data, uint64_t hole) {
    for (uint64_t i = std::max(first, layout_.ChunkAt(data));
         i < end && layout_.ChunkOffset(i) < hole; ++i) {
      ahead.Add(tag_offset(i), kChunkTagSize, i, read_tag);
    }
  });
  ahead.Finish(read_tag);
}

void CipherFile::LoadIndex(bool sealed, bool writable) {
  const uint64_t count = layout_.ChunkCount(size_);
  tags_.Clear();
  tags_.Resize(count);
  // A sealed file's index blocks are current; an unsealed one's may be stale after a crash
  // between a chunk write and its index write, so its index is rebuilt from the chunks.
  const uint64_t groups = layout_.IndexBlockCount(count);
  if (sealed && groups > 0) {
    // The blocks of the groups that hold data (a sparse file's holes are skipped).
    std::vector<uint8_t> block(kIndexBlockSize);
    auto read_block = [&](uint64_t offset, uint64_t g) {
      if (int rc = PreadAll(block.data(), block.size(), offset); rc < 0) {
        errno = -rc;
        ThrowSystemError(Named(name_, "reading index block " + std::to_string(g)));
      }
      tags_.SetBlock(g, block.data());
    };
    ReadAhead ahead(fd_.get());
    ForEachDataRegion(layout_.IndexBlockOffset(0),
                      layout_.IndexBlockOffset(groups - 1) + kIndexBlockSize,
                      [&](uint64_t data, uint64_t hole) {
                        for (uint64_t g = layout_.GroupAt(data);
                             g < groups && layout_.IndexBlockOffset(g) < hole; ++g) {
                          if (layout_.IndexBlockOffset(g) + kIndexBlockSize > data) {
                            ahead.Add(layout_.IndexBlockOffset(g), kIndexBlockSize, g, read_block);
                          }
                        }
                      });
    ahead.Finish(read_block);
  }
  ReadInlineTags(sealed ? groups * kIndexGroupChunks : 0, count);
  if (sealed) {
    if (tags_.Digest() != disk_state_.digest) {
      Damage damage = LocalizeDamage().value_or(
          Damage{"", std::nullopt,
                 "the chunks are not the versions last written (a chunk or the index was "
                 "replaced by an older copy)"});
      damage.file = CurrentName();
      ReportDamage(reporter_, damage);
      throw Error(ErrorKind::kAuthentication, Named(name_, damage.detail));
    }
  } else if (writable) {
    if (int rc = WriteIndex(1, 0, 0, 0, 0); rc < 0) {  // persist the rebuilt index
      errno = -rc;
      ThrowSystemError(Named(name_, "writing the chunk index"));
    }
  }
}

std::optional<Damage> CipherFile::LocalizeDamage() {
  // Only after a failed index check: name the first chunk that fails on its own.
  std::vector<uint8_t> cipher(layout_.stride());
  std::vector<uint8_t> plain(fixed_.chunk_size);
  std::optional<Damage> found;
  const uint64_t count = tags_.count();
  ForEachDataRegion(
      layout_.ChunkOffset(0), layout_.CipherSize(size_), [&](uint64_t data, uint64_t hole) {
        for (uint64_t i = layout_.ChunkAt(data);
             !found && i < count && layout_.ChunkOffset(i) < hole; ++i) {
          const uint64_t len = layout_.ChunkLength(i, size_);
          if (PreadAll(cipher.data(), len + kChunkOverhead, layout_.ChunkOffset(i)) < 0) {
            found = Damage{"", i, "chunk " + std::to_string(i) + ": cannot be read"};
          } else if (const char* problem = ChunkProblem(i, len, cipher.data(), plain.data())) {
            found = Damage{"", i, "chunk " + std::to_string(i) + ": " + problem};
          }
        }
      });
  return found;
}

void CipherFile::set_display_name(std::string name) {
  std::unique_lock lock(name_mu_);
  name_ = std::move(name);
}

std::string CipherFile::CurrentName() const {
  // The file's current path (it may have been renamed since it was opened), else its name.
  std::string fallback;
  {
    std::shared_lock lock(name_mu_);
    fallback = name_;
  }
  return FdPath(fd_.get(), fallback);
}

void CipherFile::ReportChunkDamage(uint64_t chunk, const std::string& what) const {
  ReportDamage(reporter_,
               {CurrentName(), chunk, "chunk " + std::to_string(chunk) + ": " + what + " (EIO)"});
}

uint64_t CipherFile::size() const {
  std::shared_lock lock(mu_);
  return size_;
}

uint16_t CipherFile::format_version() const {
  std::shared_lock lock(mu_);
  return fixed_.version;
}

bool CipherFile::sealed() const {
  std::shared_lock lock(mu_);
  return disk_state_.sealed();
}

}  // namespace envelopefs
