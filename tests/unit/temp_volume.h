// Test support for unit tests: a fresh volume (4 KiB chunks, key file) in a temp dir that is
// removed afterwards, with the host state kept inside it, and helpers to create and reopen
// cipher files in it. Not thread-safe.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "common/scoped_env.h"
#include "common/temp_dir.h"
#include "envelopefs/cipher_file.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "recording_reporter.h"

namespace envelopefs::testing {

// A whole file as text, and a file written as text (for tests that edit volume files).
inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
inline void Spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

class TempVolume {
 public:
  TempVolume() {
    std::ofstream(dir_ / "key", std::ios::binary).write("0123456789abcdef0123456789abcdef", 32);
    std::filesystem::permissions(
        dir_ / "key", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    source_ = MakeKeyFileSource(dir_ / "key");
    CreateOptions options;
    options.chunk_size = 4096;
    volume_ = Volume::Create(dir_ / "vol", options, *source_);
  }
  Volume& volume() { return *volume_; }
  // What files created or opened by Create and Open reported.
  RecordingReporter& damage() { return damage_; }
  std::filesystem::path Path(const std::string& name) const { return dir_ / "vol" / name; }

  std::shared_ptr<CipherFile> Create(const std::string& name) {
    int fd = open(Path(name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return CipherFile::Create(UniqueFd(fd), *volume_, name, damage_);
  }
  std::shared_ptr<CipherFile> Open(const std::string& name) {
    int fd = open(Path(name).c_str(), O_RDWR | O_CLOEXEC);
    return CipherFile::Open(UniqueFd(fd), *volume_, name, damage_);
  }
  static ssize_t Write(CipherFile& f, const std::string& s, uint64_t offset) {
    return f.Write({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, offset);
  }
  // Up to `n` plaintext bytes from `offset`: as many as Read returned (none on an error).
  static std::string Read(CipherFile& f, size_t n, uint64_t offset = 0) {
    std::string out(n, '\0');
    const ssize_t got = f.Read({reinterpret_cast<uint8_t*>(out.data()), n}, offset);
    out.resize(got > 0 ? static_cast<size_t>(got) : 0);
    return out;
  }

 private:
  RecordingReporter damage_;  // outlives every file (declared first)
  TempDir tmp_{"envelopefs-unit"};
  const std::filesystem::path dir_ = tmp_.path();
  ScopedEnv state_dir_{"ENVELOPEFS_STATE_DIR", (dir_ / "state").string()};
  std::unique_ptr<MasterKeySource> source_;
  std::unique_ptr<Volume> volume_;  // closed first, before tmp_ removes the directory
};

}  // namespace envelopefs::testing
