// libFuzzer target: encrypted names read from the cipher dir, decrypted with the test volume's
// name and xattr keys: entry names (NameTransform::FromBacking, short names), symlink targets
// (both formats), xattr names and xattr values. Names that encrypt must decrypt back.
//
// Input: mode (u8), then the bytes. Mode bit 0: plaintext-names mode; bit 1: volume format 1
// (else 2); bits 2..: what the bytes are: 0 a backing entry name (the test volume's root
// names in the seeds, which decrypt under its root IV), 1 a stored symlink target, 2 a backing
// xattr name, 3 a sealed xattr value (the first 16 bytes its owner id), 4 a plaintext name,
// target, xattr name and value to encrypt and decrypt back, 5 a long symlink target's side file
// (long_symlink.h): a 16-byte id, a control byte (bit 0: the rest is the side file as it is;
// else the rest is a target sealed under the id, with bit 1 one byte flipped at the offset in
// bits 2..7), read through its marker.
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/long_symlink.h"
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
  if (!text.empty() && text.size() <= kMaxSymlinkTargetLength &&
      text.find('\0') == std::string_view::npos) {
    UniqueFd root = fuzz::FreshDir("symlinks");
    fuzz::Check(CreateBackingSymlink(names, root.get(), root.get(), "l", text) == 0,
                "a symlink of up to 4095 bytes is created");
    auto stored = ReadStoredTarget(root.get(), "l");
    std::string problem;
    auto back = stored ? ReadBackingSymlink(names, root.get(), *stored, &problem) : std::nullopt;
    fuzz::Check(back && *back == text, "a symlink target reads back, long or not");
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

// A side file under the marker of a fuzzed id, read back as ReadBackingSymlink reads it.
void LongSymlinkSideFile(const NameTransform& names, fuzz::Input& in) {
  std::array<uint8_t, 16> id{};
  auto id_bytes = in.Bytes(id.size());
  std::copy(id_bytes.begin(), id_bytes.end(), id.begin());
  const uint8_t how = in.U8();
  std::string_view rest = in.RestText();
  std::vector<uint8_t> side(rest.begin(), rest.end());
  if (!(how & 1)) {
    side = names.SealLongSymlink(id, rest);
    if (how & 2) side[(how >> 2) % side.size()] ^= 1;
  }
  UniqueFd root = fuzz::FreshDir("long-symlink");
  const std::string marker = kLongSymlinkPrefix + ToBase64Url(id);
  fuzz::WriteFileAt(root.get(), marker, side);
  std::string problem;
  auto target = ReadBackingSymlink(names, root.get(), marker, &problem);
  if (names.plaintext_names()) return;  // a plaintext target is the marker itself
  fuzz::Check(target.has_value() == problem.empty(), "a refused side file says why");
  if (!target) return;
  fuzz::Check(!target->empty() && target->size() <= kMaxSymlinkTargetLength &&
                  !names.SymlinkFitsInline(target->size()),
              "a long target is canonical");
  fuzz::Check(!(how & 3) ? *target == rest : true, "a sealed target reads back as sealed");
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
  switch ((mode >> 2) % 6) {
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
    case 4:
      RoundTrip(names, ivs, in.RestText());
      break;
    default:
      LongSymlinkSideFile(names, in);
      break;
  }
  return 0;
}
