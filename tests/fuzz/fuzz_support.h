// Shared by the libFuzzer targets in tests/fuzz: a silent log, a scratch directory per process,
// the fixed test volume (tests/fuzz/volume, made by tests/fuzz/make-corpus) whose keys the
// targets use to open real cipher files and to re-authenticate fuzzed bytes (so that the code
// behind a MAC is reached), and a reader of the control bytes that prefix most inputs.
// Not thread-safe: libFuzzer runs one input at a time, in one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "envelopefs/name_transform.h"
#include "envelopefs/unique_fd.h"
#include "envelopefs/volume.h"

namespace envelopefs::fuzz {

// Silences the library's log (tamper reports are expected on every input; the environment
// variable ENVELOPEFS_FUZZ_VERBOSE keeps it), creates the scratch
// directory and points the host state (ENVELOPEFS_STATE_DIR) into it. Idempotent.
void Init();

// The process's scratch directory (on /dev/shm when there is one); removed at exit.
const std::filesystem::path& ScratchRoot();
// An empty directory `name` below the scratch root (emptied if it exists), opened.
UniqueFd FreshDir(const std::string& name, std::filesystem::path* path = nullptr);
// Writes `bytes` to `name` in `dirfd` (created or truncated, mode 0600); aborts on failure.
void WriteFileAt(int dirfd, const std::string& name, std::span<const uint8_t> bytes);

// The test volume, opened once from a copy in the scratch directory with its committed key.
Volume& TestVolume();
// The IV of the test volume's root directory (names in the corpus decrypt under it).
const DirIv& TestRootIv();
// The test volume's master key.
const SecureBytes& TestMasterKey();

// Reads little-endian control values from the front of an input; zeros once it runs out.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t U8() { return static_cast<uint8_t>(Take(1)); }
  uint16_t U16() { return static_cast<uint16_t>(Take(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Take(4)); }
  uint64_t U64() { return Take(8); }
  // `n` bytes (fewer if the input runs out).
  std::span<const uint8_t> Bytes(size_t n);
  std::span<const uint8_t> Rest() { return Bytes(size_ - pos_); }
  std::string_view RestText() {
    auto rest = Rest();
    return {reinterpret_cast<const char*>(rest.data()), rest.size()};
  }
  size_t remaining() const { return size_ - pos_; }

 private:
  uint64_t Take(size_t n);
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Prints `what` on stderr when ENVELOPEFS_FUZZ_VERBOSE is set (why an input was refused).
void Note(const std::string& what);

// Aborts (a finding for libFuzzer) with `what` when `ok` is false: for properties, e.g. that
// what was written reads back.
void Check(bool ok, const char* what);

}  // namespace envelopefs::fuzz
