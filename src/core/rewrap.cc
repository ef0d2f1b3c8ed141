#include "envelopefs/rewrap.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "envelopefs/error.h"
#include "envelopefs/file_header.h"
#include "envelopefs/unique_fd.h"

namespace envelopefs {
namespace {

using namespace format;

constexpr size_t kBatch = 2048;
constexpr size_t kSlotsEnd = kKeySlotOffset[1] + kKeySlotSize;  // 256: fixed part + key slots

struct Pending {
  const std::filesystem::path* path;
  UniqueFd fd;
  KeySlotBytes record;
  int first_slot;  // written before the first sync; the other one after it
};

int WriteSlot(int fd, const KeySlotBytes& record, int slot) {
  ssize_t n = pwrite(fd, record.data(), record.size(), static_cast<off_t>(kKeySlotOffset[slot]));
  return n == static_cast<ssize_t>(record.size()) ? 0 : -1;
}

}  // namespace

RewrapStats& RewrapStats::operator+=(const RewrapStats& o) {
  examined += o.examined;
  rewrapped += o.rewrapped;
  already_current += o.already_current;
  skipped += o.skipped;
  failed += o.failed;
  return *this;
}

uint32_t ShardOf(const std::string& relative_cipher_path, uint32_t count) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : relative_cipher_path) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<uint32_t>(h % count);
}

RewrapStats RewrapFiles(const Volume& volume, const Volume::KekCopy& target,
                        std::span<const std::filesystem::path> files,
                        const std::function<void(const std::filesystem::path&, RewrapOutcome,
                                                 const std::string&)>& on_file) {
  RewrapStats stats;
  auto report = [&](const std::filesystem::path& p, RewrapOutcome o, const std::string& why) {
    if (on_file) on_file(p, o, why);
  };
  std::vector<Pending> batch;
  batch.reserve(kBatch);

  auto finish_batch = [&] {
    if (batch.empty()) return;
    // Phase 1 is written; make it durable, then overwrite the other slot and sync again.
    if (syncfs(batch.front().fd.get()) != 0) ThrowSystemError("syncfs");
    for (Pending& p : batch) {
      if (WriteSlot(p.fd.get(), p.record, 1 - p.first_slot) != 0) {
        ++stats.failed;  // the first slot already holds the new record: the file is fine
        report(*p.path, RewrapOutcome::kFailed, std::string("second slot: ") + strerror(errno));
        continue;
      }
      ++stats.rewrapped;
      report(*p.path, RewrapOutcome::kRewrapped, "");
    }
    if (syncfs(batch.front().fd.get()) != 0) ThrowSystemError("syncfs");
    batch.clear();
  };

  std::array<uint8_t, kSlotsEnd> header{};
  for (const std::filesystem::path& path : files) {
    ++stats.examined;
    int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, strerror(errno));
      continue;
    }
    UniqueFd owned(fd);
    ssize_t n = pread(fd, header.data(), header.size(), 0);
    if (n != static_cast<ssize_t>(header.size()) ||
        std::memcmp(header.data(), kMagic.data(), kMagic.size()) != 0) {
      ++stats.skipped;
      report(path, RewrapOutcome::kSkipped, "not an envelopefs file");
      continue;
    }
    std::span<const uint8_t> fixed(header.data(), kFixedSize);
    try {
      ParseFixedHeader(header);
    } catch (const Error& e) {
      ++stats.skipped;
      report(path, RewrapOutcome::kSkipped, e.what());
      continue;
    }
    KeySlotInfo info[2];
    std::optional<SecureBytes> dek[2];
    for (int i = 0; i < 2; ++i) {
      std::span<const uint8_t, kKeySlotSize> slot(header.data() + kKeySlotOffset[i], kKeySlotSize);
      info[i] = ParseKeySlot(slot);
      SecureBytes kek;
      if (volume.FindKek(info[i].kek_id, info[i].kek_version, kek)) {
        dek[i] = UnwrapDek(fixed, slot, kek);
      }
    }
    if (!dek[0] && !dek[1]) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed,
             "no key slot opens (KEK version " + std::to_string(info[0].kek_version) +
                 " retired or unknown, or the header is damaged)");
      continue;
    }
    bool current = true;
    for (int i = 0; i < 2; ++i) {
      current = current && dek[i] && info[i].kek_id == target.info.id &&
                info[i].kek_version == target.info.version;
    }
    if (current) {
      ++stats.already_current;
      report(path, RewrapOutcome::kCurrent, "");
      continue;
    }
    // Overwrite first a slot that is not the only valid one: an invalid slot, else the one with
    // the lower generation (slot 1 on a tie).
    int first = !dek[0] ? 0 : !dek[1] ? 1 : (info[0].generation < info[1].generation ? 0 : 1);
    const SecureBytes& plain_dek = dek[first == 0 ? 1 : 0] ? *dek[first == 0 ? 1 : 0] : *dek[first];
    uint64_t generation = std::max(info[0].generation, info[1].generation) + 1;
    Pending p{&path, std::move(owned),
              WrapDek(fixed, KeySlotInfo{generation, target.info.id, target.info.version},
                      plain_dek, target.key),
              first};
    if (WriteSlot(p.fd.get(), p.record, first) != 0) {
      ++stats.failed;
      report(path, RewrapOutcome::kFailed, strerror(errno));
      continue;
    }
    batch.push_back(std::move(p));
    if (batch.size() == kBatch) finish_batch();
  }
  finish_batch();
  return stats;
}

}  // namespace envelopefs
