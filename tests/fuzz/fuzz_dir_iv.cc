// libFuzzer target: directory IV files, as NameTransform::ReadDirIvs reads them from every
// directory of the cipher dir: "envelopefs.diriv" and its sync-conflict copies
// ("envelopefs*.diriv*"), which may be of any size or type.
//
// Input: mode (u8; bits 0-1: the IV file is a regular file, a symlink to one, a FIFO or is
// missing), the IV file's length (u8) and bytes (a real IV file in the seeds), then conflict
// copies while bytes remain: name suffix length (u8), suffix, content length (u8), content.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "envelopefs/error.h"
#include "envelopefs/name_transform.h"
#include "fuzz_support.h"

using namespace envelopefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  std::span<const uint8_t> primary = in.Bytes(in.U8());
  UniqueFd dir = fuzz::FreshDir("diriv");
  switch (mode & 3) {
    case 0:
      fuzz::WriteFileAt(dir.get(), kDirIvFileName, primary);
      break;
    case 1:
      fuzz::WriteFileAt(dir.get(), "target", primary);
      fuzz::Check(::symlinkat("target", dir.get(), kDirIvFileName) == 0, "symlink");
      break;
    case 2:
      fuzz::Check(::mkfifoat(dir.get(), kDirIvFileName, 0600) == 0, "mkfifo");
      break;
    default:
      break;
  }
  for (int copies = 0; in.remaining() > 0 && copies < 8; ++copies) {
    auto suffix = in.Bytes(in.U8());
    std::string name = std::string(kDirIvFileName) + ".";
    for (uint8_t c : suffix) name += (c == '/' || c == 0) ? '_' : static_cast<char>(c);
    auto content = in.Bytes(in.U8());
    if (name.size() > kMaxBackingNameLength) continue;
    fuzz::WriteFileAt(dir.get(), name, content);
  }
  const Volume& volume = fuzz::TestVolume();
  NameTransform names(volume.name_key(), volume.xattr_key(), false, volume.config().format_version);
  try {
    DirIvs ivs = names.ReadDirIvs(dir.get());
    fuzz::Check((mode & 3) == 0 && primary.size() == kDirIvSize &&
                    std::equal(primary.begin(), primary.end(), ivs.primary.begin()),
                "only a regular 16-byte IV file is read, as it is");
    fuzz::Check(std::find(ivs.alternates.begin(), ivs.alternates.end(), ivs.primary) ==
                    ivs.alternates.end(),
                "no alternate repeats the primary IV");
  } catch (const Error&) {
  }
  return 0;
}
