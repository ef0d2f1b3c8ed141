// Test support for the offline tools (envelopectl): a volume created with `envelopectl init`
// whose entries are written without FUSE, through the same core code the daemon uses
// (NameTransform for names and directory IVs, CipherFile for contents), so envelopectl tests
// run fast and without /dev/fuse while operating on real envelopefs files.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "envelopefs/damage_reporter.h"
#include "envelopefs/name_transform.h"
#include "envelopefs/volume.h"
#include "mount_fixture.h"

namespace envelopefs::testing {

class OfflineVolume {
 public:
  // Creates a key file and runs `envelopectl init --keyfile KEY INIT_FLAGS CIPHER`.
  explicit OfflineVolume(const std::string& init_flags = "--chunk-size 4096");

  const fs::path& root() const { return root_.path(); }  // a scratch dir holding everything
  const fs::path& cipher() const { return cipher_; }
  const fs::path& keyfile() const { return keyfile_; }
  // "ENVELOPECTL ARGS --keyfile KEY": a command line for Run().
  std::string Ctl(const std::string& args) const;

  // Writes `content` to the plaintext path `path` (parents are created), seals it and returns
  // the cipher path. New files are wrapped under the active KEK (the keyring is re-read first,
  // so a rotation made by envelopectl applies).
  fs::path Write(const std::string& path, const std::string& content);
  fs::path Mkdir(const std::string& path);
  fs::path Symlink(const std::string& path, const std::string& target);
  // A second name for an existing file (a hard link in the cipher dir).
  fs::path Link(const std::string& existing, const std::string& path);
  // The cipher path of an existing plaintext path.
  fs::path CipherPath(const std::string& path) const;

  const Volume& volume() const { return *volume_; }

 private:
  // The backing directory of plaintext directory `dir` ("" = root) and its open fd.
  struct Dir {
    fs::path cipher;
    int fd = -1;
    ~Dir();
  };
  std::unique_ptr<Dir> OpenDir(const fs::path& dir, bool create) const;
  std::string BackingName(const Dir& dir, const std::string& name, bool in_root) const;

  TempDir root_;
  fs::path cipher_, keyfile_;
  LoggingDamageReporter damage_;
  std::unique_ptr<Volume> volume_;
  std::unique_ptr<NameTransform> names_;
};

}  // namespace envelopefs::testing
