// What the files of CipherFile (cipher_file.cc: the data path; cipher_file_open.cc: creating
// and opening; cipher_file_state.cc: state records, the chunk index on disk, sealing) share.
// Internal to the core library.
#pragma once

#include <cstdint>
#include <vector>

#include "envelopefs/file_header.h"
#include "envelopefs/volume.h"

namespace envelopefs {

// Per-thread scratch buffers: the data path allocates nothing per chunk or per request once
// a thread has seen its largest request.
inline std::vector<uint8_t>& CipherScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
inline std::vector<uint8_t>& PlainScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
inline std::vector<uint8_t>& OutputScratch() {
  thread_local std::vector<uint8_t> buffer;
  return buffer;
}
inline uint8_t* Scratch(std::vector<uint8_t>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// The header of an empty file: a fresh DEK (for every new file and every truncation to zero)
// wrapped under the volume's active KEK, and the keys derived from it. A new DEK may only be
// wrapped under a KEK version known to be the active one: throws if the keyring may be stale.
struct NewHeader {
  HeaderBytes bytes;
  FileKeys keys;
};
NewHeader BuildNewHeader(const Volume& volume, uint32_t chunk_size, const FileId& file_id,
                         uint64_t key_generation);

}  // namespace envelopefs
