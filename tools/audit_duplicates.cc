// The duplicate checks of envelopectl audit — see audit_duplicates.h.
#include "audit_duplicates.h"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace envelopefs::cli {

namespace {

template <size_t N>
uint64_t First8(const std::array<uint8_t, N>& bytes) {
  static_assert(N >= 8);
  uint64_t v;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

// The walk indices of the prints whose `key_of` value is also another print's.
template <typename KeyOf, typename Has>
std::vector<uint64_t> Colliding(std::vector<FilePrint>& firsts, KeyOf key_of, Has has) {
  std::sort(firsts.begin(), firsts.end(), [&](const FilePrint& a, const FilePrint& b) {
    return std::make_tuple(!has(a), key_of(a)) < std::make_tuple(!has(b), key_of(b));
  });
  std::vector<uint64_t> out;
  for (size_t a = 0; a < firsts.size() && has(firsts[a]);) {
    size_t b = a + 1;
    while (b < firsts.size() && has(firsts[b]) && key_of(firsts[b]) == key_of(firsts[a])) ++b;
    if (b - a >= 2) {
      for (size_t k = a; k < b; ++k) out.push_back(firsts[k].index());
    }
    a = b;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

FilePrint MakePrint(uint64_t walk_index, dev_t dev, ino_t ino, const std::optional<FileId>& file_id,
                    const std::optional<Sha256Digest>& dek) {
  FilePrint p;
  p.dev = static_cast<uint64_t>(dev);
  p.ino = static_cast<uint64_t>(ino);
  p.index_and_flags = walk_index & FilePrint::kIndexMask;
  if (file_id) {
    p.file_id = First8(*file_id);
    p.index_and_flags |= FilePrint::kHasFileId;
  }
  if (dek) {
    p.dek = First8(*dek);
    p.index_and_flags |= FilePrint::kHasDek;
  }
  return p;
}

DuplicateCandidates FindCandidates(std::vector<FilePrint> prints) {
  DuplicateCandidates out;
  // The first name (lowest walk index) of every inode; the others are links to it.
  std::sort(prints.begin(), prints.end(), [](const FilePrint& a, const FilePrint& b) {
    return std::make_tuple(a.dev, a.ino, a.index()) < std::make_tuple(b.dev, b.ino, b.index());
  });
  size_t kept = 0;
  for (size_t i = 0; i < prints.size(); ++i) {
    if (i > 0 && prints[i].dev == prints[i - 1].dev && prints[i].ino == prints[i - 1].ino) {
      continue;
    }
    prints[kept++] = prints[i];
  }
  prints.resize(kept);
  out.inodes = kept;
  out.file_id_indices = Colliding(
      prints, [](const FilePrint& p) { return p.file_id; },
      [](const FilePrint& p) { return p.has_file_id(); });
  out.dek_indices = Colliding(
      prints, [](const FilePrint& p) { return p.dek; },
      [](const FilePrint& p) { return p.has_dek(); });
  return out;
}

template <typename Key>
nlohmann::json GroupExact(std::vector<Candidate<Key>> candidates) {
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return std::tie(a.key, a.index) < std::tie(b.key, b.index);
  });
  nlohmann::json out = nlohmann::json::array();
  for (size_t a = 0; a < candidates.size();) {
    size_t b = a + 1;
    while (b < candidates.size() && candidates[b].key == candidates[a].key) ++b;
    if (b - a >= 2) {
      nlohmann::json group = nlohmann::json::array();
      for (size_t k = a; k < b; ++k) group.push_back(candidates[k].cipher_path);
      out.push_back(group);
    }
    a = b;
  }
  return out;
}

template nlohmann::json GroupExact<FileId>(std::vector<Candidate<FileId>>);
template nlohmann::json GroupExact<Sha256Digest>(std::vector<Candidate<Sha256Digest>>);

}  // namespace envelopefs::cli
