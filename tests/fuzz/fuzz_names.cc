// libFuzzer target: encrypted names read from the cipher dir, decrypted with the test volume's
// name and xattr keys: entry names (NameTransform::FromBacking, short names), symlink targets
// (both formats), xattr names and xattr values. Names that encrypt must decrypt back.
//
// Input: mode (u8), then the bytes. Mode bit 0: plaintext-names mode; bit 1: volume format 1
// (else 2); bits 2..: what the bytes are: 0 a backing entry name (the test volume's root
// names in the seeds, which decrypt under its root IV), 1 a stored symlink target, 2 a backing
// xattr name, 3 a sealed xattr value (the first 16 bytes its owner id), 4 a plaintext name,
// target, xattr name and value to encrypt and decrypt back.
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "envelopefs/error.h"
#include "envelopefs/name_transform.h"
#include "fuzz_support.h"

using namespace envelopefs;

namespace {

int EmptyDir() {
  static UniqueFd dir = fuzz::FreshDir("names");
  return dir.get();
}

void RoundTrip(const NameTransform& names, const DirIvs& ivs, std::string_view text) {
  for (bool in_root : {false, true}) {
    auto backing = names.ToBacking(ivs.primary, text, in_root);
    if (!backing || NameTransform::IsLongName(*backing)) continue;
    fuzz::Check(!names.IsInternal(*backing, in_root), "an encrypted name is not internal");
    auto back = names.FromBacking(EmptyDir(), ivs, *backing);
    fuzz::Check(back && *back == text, "an entry name decrypts back");
  }
  if (!text.empty() && text.find('\0') == std::string_view::npos) {
    auto back = names.DecryptSymlink(names.EncryptSymlink(text));
    fuzz::Check(back && *back == text, "a symlink target decrypts back");
  }
  const std::string xattr = "user." + std::string(text);
  if (auto backing = names.ToBackingXattrName(xattr)) {
    auto back = names.FromBackingXattrName(*backing);
    fuzz::Check(back && *back == xattr, "an xattr name decrypts back");
    XattrOwnerId owner{};
    std::vector<uint8_t> sealed = names.SealXattrValue(*backing, owner, AsBytes(text));
    auto value = names.OpenXattrValue(*backing, owner, sealed);
    fuzz::Check(value && std::ranges::equal(*value, AsBytes(text)), "an xattr value opens back");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const Volume& volume = fuzz::TestVolume();
  NameTransform names(volume.name_key(), volume.xattr_key(), (mode & 1) != 0,
                      (mode & 2) ? kVolumeFormat1 : kVolumeFormat2);
  DirIvs ivs;
  ivs.primary = fuzz::TestRootIv();
  switch ((mode >> 2) % 5) {
    case 0: {
      std::string_view name = in.RestText();
      if (name.size() > kMaxBackingNameLength) break;  // no directory entry is longer
      names.IsInternal(name, true);
      // Long names read a side file: the long-name target covers them.
      if (NameTransform::IsLongName(name)) break;
      auto plain = names.FromBacking(EmptyDir(), ivs, name);
      if (plain) {
        fuzz::Check(!plain->empty() && plain->size() <= kMaxNameLength &&
                        plain->find_first_of(std::string_view("/\0", 2)) == std::string::npos,
                    "a decrypted name is a valid entry name");
      }
      break;
    }
    case 1:
      // Plaintext names store targets as they are (and the kernel never returns an empty one).
      if (auto target = names.DecryptSymlink(in.RestText()); target && !names.plaintext_names()) {
        fuzz::Check(!target->empty(), "a decrypted symlink target is not empty");
      }
      break;
    case 2:
      names.FromBackingXattrName(in.RestText());
      break;
    case 3: {
      XattrOwnerId owner{};
      auto id = in.Bytes(owner.size());
      std::copy(id.begin(), id.end(), owner.begin());
      names.OpenXattrValue("user.x", owner, in.Rest());
      names.OpenXattrValue("user.x", std::nullopt, in.Rest());
      break;
    }
    default:
      RoundTrip(names, ivs, in.RestText());
      break;
  }
  return 0;
}
