// Shared support of the libFuzzer targets; see fuzz_support.h.
#include "fuzz_support.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/log.h"

#ifndef ENVELOPEFS_FUZZ_VOLUME
#error "ENVELOPEFS_FUZZ_VOLUME must name the test volume (tests/fuzz/volume)"
#endif

namespace envelopefs::fuzz {
namespace {

namespace fs = std::filesystem;

fs::path& Root() {
  static fs::path root;
  return root;
}

void RemoveScratch() {
  std::error_code ec;
  if (!Root().empty()) fs::remove_all(Root(), ec);
}

struct Opened {
  std::unique_ptr<Volume> volume;
  DirIv root_iv{};
  SecureBytes master;
};

Opened& TheVolume() {
  static Opened opened = [] {
    Init();
    const fs::path source = fs::path(ENVELOPEFS_FUZZ_VOLUME);
    const fs::path copy = ScratchRoot() / "volume";
    fs::create_directories(copy);
    for (const char* name : {kConfigFileName, kKeyringFileName, kDirIvFileName}) {
      fs::copy_file(source / name, copy / name, fs::copy_options::overwrite_existing);
    }
    Opened o;
    auto key = MakeKeyFileSource(source / "volume.key", /*allow_insecure=*/true);
    o.volume = Volume::Open(copy, *key);
    o.master = key->MasterKey(o.volume->master_slots().front().params, o.volume->config().volume_id);
    UniqueFd root(::open(copy.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    NameTransform names(o.volume->name_key(), o.volume->xattr_key(), false,
                        o.volume->config().format_version);
    o.root_iv = names.ReadDirIvs(root.get()).primary;
    return o;
  }();
  return opened;
}

}  // namespace

void Init() {
  if (!Root().empty()) return;
  // ENVELOPEFS_FUZZ_VERBOSE=1 keeps the library's log on stderr (to see why an input fails).
  if (std::getenv("ENVELOPEFS_FUZZ_VERBOSE") == nullptr) {
    SetLogSink([](LogLevel, const std::string&) {});
  }
  char tmpl[] = "/dev/shm/envelopefs-fuzz-XXXXXX";
  char tmpl_tmp[] = "/tmp/envelopefs-fuzz-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  if (made == nullptr) made = ::mkdtemp(tmpl_tmp);
  if (made == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  Root() = made;
  std::atexit(RemoveScratch);
  fs::create_directories(Root() / "state");
  ::setenv("ENVELOPEFS_STATE_DIR", (Root() / "state").c_str(), 1);
}

const fs::path& ScratchRoot() {
  Init();
  return Root();
}

UniqueFd FreshDir(const std::string& name, fs::path* path) {
  const fs::path dir = ScratchRoot() / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  if (path != nullptr) *path = dir;
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Check(fd.valid(), "open scratch directory");
  return fd;
}

void WriteFileAt(int dirfd, const std::string& name, std::span<const uint8_t> bytes) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  Check(fd.valid(), "create scratch file");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    Check(n > 0, "write scratch file");
    done += static_cast<size_t>(n);
  }
}

Volume& TestVolume() { return *TheVolume().volume; }
const DirIv& TestRootIv() { return TheVolume().root_iv; }
const SecureBytes& TestMasterKey() { return TheVolume().master; }

std::span<const uint8_t> Input::Bytes(size_t n) {
  n = std::min(n, size_ - pos_);
  std::span<const uint8_t> out(data_ + pos_, n);
  pos_ += n;
  return out;
}

uint64_t Input::Take(size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t byte = pos_ < size_ ? data_[pos_++] : 0;
    v |= byte << (8 * i);
  }
  return v;
}

void Note(const std::string& what) {
  static const bool verbose = std::getenv("ENVELOPEFS_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "envelopefs fuzz: %s\n", what.c_str());
}

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "envelopefs fuzz: property violated: %s\n", what);
  std::abort();
}

}  // namespace envelopefs::fuzz
