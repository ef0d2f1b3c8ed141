// libFuzzer target: long-name side files ("envelopefs.long.<hash>.name"), as FromBacking reads
// them from the cipher dir to decrypt a hashed long name; a name written with its side file
// must decrypt back.
//
// Input: mode (u8), then the side file's content (real side files of the test volume's root in
// the seeds). Mode bit 0: the entry's backing name is the canonical one for the content (else
// the content's first line names the entry and the rest is the side file); bits 1-2: the side
// file is a regular file, a symlink to it, a FIFO or a directory; bit 3: instead, the bytes
// are a plaintext name written with WriteLongNameSideFile and read back.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/name_transform.h"
#include "fuzz_support.h"

using namespace envelopefs;

namespace {

bool ValidFileName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxBackingNameLength && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  std::string_view content = in.RestText();
  const Volume& volume = fuzz::TestVolume();
  NameTransform names(volume.name_key(), volume.xattr_key(), false, volume.config().format_version);
  DirIvs ivs;
  ivs.primary = fuzz::TestRootIv();
  UniqueFd dir = fuzz::FreshDir("long");

  if (mode & 8) {
    auto backing = names.ToBacking(ivs.primary, content, false);
    if (!backing || !NameTransform::IsLongName(*backing)) return 0;
    fuzz::Check(names.WriteLongNameSideFile(dir.get(), ivs.primary, content, *backing) == 0,
                "the side file of a long name is written");
    auto back = names.FromBacking(dir.get(), ivs, *backing);
    fuzz::Check(back && *back == content, "a long name decrypts back");
    fuzz::Check(names.RemoveLongNameSideFile(dir.get(), *backing) == 0, "its side file goes");
    return 0;
  }

  std::string backing;
  if (mode & 1) {
    backing = std::string(kLongNamePrefix) + ToBase64Url(Sha256(AsBytes(content)));
  } else {
    const size_t eol = content.find('\n');
    backing = std::string(content.substr(0, eol));
    content = eol == std::string_view::npos ? std::string_view() : content.substr(eol + 1);
  }
  const std::string side = backing + kLongNameSuffix;
  if (!ValidFileName(side)) return 0;
  switch ((mode >> 1) & 3) {
    case 0:
      fuzz::WriteFileAt(dir.get(), side, AsBytes(content));
      break;
    case 1:
      fuzz::WriteFileAt(dir.get(), "target", AsBytes(content));
      fuzz::Check(::symlinkat("target", dir.get(), side.c_str()) == 0, "symlink");
      break;
    case 2:
      fuzz::Check(::mkfifoat(dir.get(), side.c_str(), 0600) == 0, "mkfifo");
      break;
    default:
      fuzz::Check(::mkdirat(dir.get(), side.c_str(), 0700) == 0, "mkdir");
      break;
  }
  names.IsInternal(side, false);
  auto plain = names.FromBacking(dir.get(), ivs, backing);
  if (plain) {
    fuzz::Check(((mode >> 1) & 3) == 0, "only a regular side file is read");
    fuzz::Check(!plain->empty() && plain->size() <= kMaxNameLength,
                "a decrypted long name is a valid entry name");
  }
  return 0;
}
