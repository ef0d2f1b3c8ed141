// Unit tests of NameTransform's symlink targets and extended attributes in volume formats 1 and
// 2 (the format-2 byte layouts are checked against an independent OpenSSL decryption, as
// envelopefs-format(5) states them), and of EscapeName.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/crypto.h"
#include "envelopefs/encoding.h"
#include "envelopefs/name_transform.h"
#include "name_transform_fixture.h"

namespace envelopefs {
namespace {

using namespace envelopefs::testing;

// An independent AES-256-SIV open (OpenSSL EVP, one S2V component per AAD item) of
// V(16) || C, for checking the documented byte layouts; std::nullopt if it does not open.
std::optional<std::vector<uint8_t>> SivOpenForTest(const SecureBytes& key,
                                                   std::vector<std::span<const uint8_t>> aad,
                                                   std::span<const uint8_t> sealed) {
  if (sealed.size() <= 16) return std::nullopt;
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-SIV", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::vector<uint8_t> plain(sealed.size() - 16);
  int len = 0;
  bool ok =
      EVP_DecryptInit_ex2(ctx, cipher, key.span().data(), nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, const_cast<uint8_t*>(sealed.data())) == 1;
  for (auto item : aad) {
    ok = ok && EVP_DecryptUpdate(ctx, nullptr, &len, item.data(), static_cast<int>(item.size()));
  }
  ok = ok &&
       EVP_DecryptUpdate(ctx, plain.data(), &len, sealed.data() + 16,
                         static_cast<int>(sealed.size() - 16)) == 1 &&
       EVP_DecryptFinal_ex(ctx, plain.data() + len, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  if (!ok) return std::nullopt;
  return plain;
}

// An independent AES-256-GCM open of nonce(12) || C || tag(16) with `aad`.
std::optional<std::vector<uint8_t>> GcmOpenForTest(const SecureBytes& key,
                                                   std::span<const uint8_t> aad,
                                                   std::span<const uint8_t> sealed) {
  if (sealed.size() < 28) return std::nullopt;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::vector<uint8_t> plain(sealed.size() - 28);
  int len = 0;
  const uint8_t* tag = sealed.data() + sealed.size() - 16;
  bool ok =
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.span().data(), sealed.data()) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx, plain.data(), &len, sealed.data() + 12,
                        static_cast<int>(plain.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(tag)) == 1 &&
      EVP_DecryptFinal_ex(ctx, plain.data() + len, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  return plain;
}

XattrOwnerId PatternOwner(uint8_t start) {
  XattrOwnerId id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(start + 3 * i);
  return id;
}

// --- symlinks and extended attributes --------------------------------------------------------

TEST(NameTransformTest, SymlinkTargetsRoundTripInBothFormats) {
  for (uint32_t format : {kFormat1, kFormat2}) {
    NameTransform names = MakeNames(false, format);
    for (std::string target :
         {std::string("../a/b"), std::string("/etc/passwd"), MixedName(1), MixedName(16),
          MixedName(1000), std::string("\xff\xfe/\x01\n"), std::string(4095, 'p')}) {
      std::string stored = names.EncryptSymlink(target);
      EXPECT_TRUE(IsBase64Url(stored));
      if (target.size() >= 6) {  // a short target may occur in random text by chance
        EXPECT_EQ(stored.find(target), std::string::npos);
      }
      auto back = names.DecryptSymlink(stored);
      ASSERT_TRUE(back) << format;
      EXPECT_EQ(target, *back);
    }
    std::string stored = names.EncryptSymlink("target");
    for (size_t i = 0; i < stored.size(); ++i) {
      std::string tampered = stored;
      tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
      EXPECT_FALSE(names.DecryptSymlink(tampered)) << format << " " << i;
    }
    EXPECT_FALSE(names.DecryptSymlink(stored.substr(0, stored.size() - 1)));
    EXPECT_FALSE(names.DecryptSymlink(stored + "AAAA"));
    EXPECT_FALSE(names.DecryptSymlink("target"));
    EXPECT_FALSE(names.DecryptSymlink(""));
    // Symlink targets and entry names use different associated data.
    std::string as_name = *names.ToBacking(DirIv{}, "target", false);
    EXPECT_FALSE(names.DecryptSymlink(as_name));
    // Another volume's key.
    EXPECT_FALSE(MakeNames(false, format).DecryptSymlink(stored));

    NameTransform plain = MakeNames(/*plaintext=*/true, format);
    EXPECT_EQ("../x", plain.EncryptSymlink("../x"));
    EXPECT_EQ("../x", *plain.DecryptSymlink("../x"));
  }
}

TEST(NameTransformTest, Format2SymlinkTargetsAreRandomized) {
  NameTransform v2 = MakeNames(false, kFormat2);
  std::string a = v2.EncryptSymlink("../shared/target");
  std::string b = v2.EncryptSymlink("../shared/target");
  EXPECT_NE(a, b);  // equal targets no longer look equal in the cipher dir
  EXPECT_EQ("../shared/target", *v2.DecryptSymlink(a));
  EXPECT_EQ("../shared/target", *v2.DecryptSymlink(b));
  // Format 1 stays deterministic (the fixed vector's encoding).
  NameTransform v1 = MakeNames(false, kFormat1);
  EXPECT_EQ(v1.EncryptSymlink("../shared/target"), v1.EncryptSymlink("../shared/target"));
}

TEST(NameTransformTest, Format2SymlinkLayoutIsNonceThenSivOfThePaddedTarget) {
  SecureBytes key = SecureBytes::Random(64);
  NameTransform names(key, SecureBytes::Random(32), false, kFormat2);
  for (std::string target : {std::string("a"), std::string(15, 't'), std::string(16, 't'),
                             std::string("../lake/year=2026")}) {
    auto bytes = FromBase64Url(names.EncryptSymlink(target));
    ASSERT_TRUE(bytes);
    const size_t padded = (target.size() / 16 + 1) * 16;
    ASSERT_EQ(16u + 16u + padded, bytes->size());  // nonce, SIV tag, padded ciphertext
    std::span<const uint8_t> all(*bytes);
    auto plain =
        SivOpenForTest(key, {Bytes("envelopefs symlink v2"), all.first(16)}, all.subspan(16));
    ASSERT_TRUE(plain);
    std::string expected =
        target + std::string(padded - target.size(), static_cast<char>(padded - target.size()));
    EXPECT_EQ(expected, std::string(plain->begin(), plain->end()));
    // The nonce is bound: the same SIV output under another nonce does not open.
    std::vector<uint8_t> moved = *bytes;
    moved[0] ^= 1;
    EXPECT_FALSE(names.DecryptSymlink(ToBase64Url(moved)));
  }
}

TEST(NameTransformTest, SymlinkEncodingsDoNotCrossFormats) {
  SecureBytes name_key = SecureBytes::Random(64);
  SecureBytes xattr_key = SecureBytes::Random(32);
  NameTransform v1(name_key, xattr_key, false, kFormat1);
  NameTransform v2(name_key, xattr_key, false, kFormat2);
  for (std::string target : {std::string("x"), std::string("../a/b"), MixedName(100)}) {
    std::string old_encoding = v1.EncryptSymlink(target);
    std::string new_encoding = v2.EncryptSymlink(target);
    EXPECT_EQ(target, *v1.DecryptSymlink(old_encoding));
    EXPECT_EQ(target, *v2.DecryptSymlink(new_encoding));
    EXPECT_FALSE(v2.DecryptSymlink(old_encoding));  // no downgrade to the deterministic form
    EXPECT_FALSE(v1.DecryptSymlink(new_encoding));
    // Nor a format-1 encoding with 16 bytes put in front of it (a forged "nonce").
    auto old_bytes = FromBase64Url(old_encoding);
    ASSERT_TRUE(old_bytes);
    std::vector<uint8_t> forged(16, 0);
    forged.insert(forged.end(), old_bytes->begin(), old_bytes->end());
    EXPECT_FALSE(v2.DecryptSymlink(ToBase64Url(forged)));
  }
}

TEST(NameTransformTest, XattrNamesRoundTripInTheUserNamespaceOnly) {
  for (bool plaintext : {false, true}) {
    for (uint32_t format : {kFormat1, kFormat2}) {
      NameTransform names = MakeNames(plaintext, format);
      auto backing = names.ToBackingXattrName("user.comment");
      ASSERT_TRUE(backing);
      EXPECT_EQ("user.", backing->substr(0, 5));
      EXPECT_TRUE(IsBase64Url(backing->substr(5)));
      EXPECT_EQ(*backing, *names.ToBackingXattrName("user.comment"));  // deterministic
      EXPECT_EQ("user.comment", *names.FromBackingXattrName(*backing));
      EXPECT_EQ("user.", *names.FromBackingXattrName(*names.ToBackingXattrName("user.")));
      EXPECT_EQ("user.\xff\xfe",
                *names.FromBackingXattrName(*names.ToBackingXattrName("user.\xff\xfe")));

      EXPECT_FALSE(names.ToBackingXattrName("security.selinux"));
      EXPECT_FALSE(names.ToBackingXattrName("trusted.x"));
      EXPECT_FALSE(names.ToBackingXattrName("system.posix_acl_access"));
      EXPECT_FALSE(names.FromBackingXattrName("security.selinux"));
      EXPECT_FALSE(names.FromBackingXattrName("user.comment"));
      std::string tampered = *backing;
      tampered.back() = tampered.back() == 'A' ? 'Q' : 'A';
      EXPECT_FALSE(names.FromBackingXattrName(tampered));
    }
  }
}

TEST(NameTransformTest, XattrValuesAreSealedAndBoundToTheirName) {
  for (uint32_t format : {kFormat1, kFormat2}) {
    NameTransform names = MakeNames(false, format);
    const XattrOwnerId owner = PatternOwner(1);
    std::string name = *names.ToBackingXattrName("user.comment");
    std::string other = *names.ToBackingXattrName("user.other");
    std::vector<uint8_t> value = {'h', 'e', 'l', 'l', 'o', 0, 0xff};
    std::vector<uint8_t> sealed = names.SealXattrValue(name, owner, value);
    EXPECT_EQ(12 + value.size() + 16, sealed.size());
    EXPECT_NE(sealed, names.SealXattrValue(name, owner, value));  // fresh nonce each time
    auto opened = names.OpenXattrValue(name, owner, sealed);
    ASSERT_TRUE(opened);
    EXPECT_EQ(value, *opened);

    EXPECT_FALSE(names.OpenXattrValue(other, owner, sealed));  // moved to another attribute
    for (size_t i = 0; i < sealed.size(); ++i) {
      std::vector<uint8_t> tampered = sealed;
      tampered[i] ^= 0x01;
      EXPECT_FALSE(names.OpenXattrValue(name, owner, tampered)) << i;
    }
    EXPECT_FALSE(names.OpenXattrValue(name, owner, std::span<const uint8_t>(sealed).first(27)));
    EXPECT_FALSE(names.OpenXattrValue(name, owner, {}));
    EXPECT_FALSE(MakeNames(false, format).OpenXattrValue(name, owner, sealed));  // another key

    std::vector<uint8_t> empty_sealed = names.SealXattrValue(name, owner, {});
    EXPECT_EQ(28u, empty_sealed.size());
    auto empty = names.OpenXattrValue(name, owner, empty_sealed);
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->empty());
  }
}

TEST(NameTransformTest, Format2XattrValuesAreBoundToTheirObject) {
  SecureBytes name_key = SecureBytes::Random(64);
  SecureBytes xattr_key = SecureBytes::Random(32);
  NameTransform v2(name_key, xattr_key, false, kFormat2);
  const XattrOwnerId file_a = PatternOwner(1), file_b = PatternOwner(2);
  std::string name = *v2.ToBackingXattrName("user.checksum");
  std::vector<uint8_t> value = {'s', 'h', 'a', '-', '1'};
  std::vector<uint8_t> sealed = v2.SealXattrValue(name, file_a, value);
  EXPECT_EQ(value, *v2.OpenXattrValue(name, file_a, sealed));
  EXPECT_FALSE(v2.OpenXattrValue(name, file_b, sealed));        // copied to another object
  EXPECT_FALSE(v2.OpenXattrValue(name, std::nullopt, sealed));  // or to a name-only owner
  std::vector<uint8_t> name_only = v2.SealXattrValue(name, std::nullopt, value);
  EXPECT_EQ(value, *v2.OpenXattrValue(name, std::nullopt, name_only));
  EXPECT_FALSE(v2.OpenXattrValue(name, file_a, name_only));

  // The layout: nonce(12) || AES-256-GCM(xattr key, AAD = backing name || 0x00 || owner) ||
  // tag(16).
  std::vector<uint8_t> aad(name.begin(), name.end());
  aad.push_back(0);
  aad.insert(aad.end(), file_a.begin(), file_a.end());
  auto independent = GcmOpenForTest(xattr_key, aad, sealed);
  ASSERT_TRUE(independent);
  EXPECT_EQ(value, *independent);
  EXPECT_FALSE(GcmOpenForTest(xattr_key, Bytes(name), sealed));

  // Format 1 binds the value to the name only (the owner is ignored), and the two formats never
  // open each other's values: no downgrade by re-sealing.
  NameTransform v1(name_key, xattr_key, false, kFormat1);
  std::vector<uint8_t> old_value = v1.SealXattrValue(name, file_a, value);
  EXPECT_EQ(value, *v1.OpenXattrValue(name, file_b, old_value));
  EXPECT_EQ(value, *GcmOpenForTest(xattr_key, Bytes(name), old_value));
  EXPECT_FALSE(v2.OpenXattrValue(name, file_a, old_value));
  EXPECT_FALSE(v1.OpenXattrValue(name, file_a, sealed));
}

TEST(NameTransformTest, DirectoryXattrOwnerIsThePrimaryIv) {
  DirIvs ivs;
  ivs.primary = PatternIv(20);
  ivs.alternates = {PatternIv(21)};
  auto owner = MakeNames(false, kFormat2).DirectoryXattrOwner(ivs);
  ASSERT_TRUE(owner);
  EXPECT_TRUE(std::equal(owner->begin(), owner->end(), ivs.primary.begin()));
  // Plaintext-names mode has no directory IVs: directory values are bound to their name only.
  EXPECT_FALSE(MakeNames(true, kFormat2).DirectoryXattrOwner(ivs));
}

// --- EscapeName ------------------------------------------------------------------------------

TEST(NameTransformTest, EscapeNameKeepsUtf8AndEscapesEverythingElse) {
  EXPECT_EQ("report.pdf", EscapeName("report.pdf"));
  EXPECT_EQ("Zürich 日本 €", EscapeName("Zürich 日本 €"));
  EXPECT_EQ("\\xff\\xfe-data.csv", EscapeName("\xff\xfe-data.csv"));
  EXPECT_EQ("a\\x0ab\\x0d\\x09", EscapeName("a\nb\r\t"));
  EXPECT_EQ("\\x5cx41", EscapeName("\\x41"));                // a backslash is escaped: no ambiguity
  EXPECT_EQ("\\x7f\\xc2\\x9b", EscapeName("\x7f\xc2\x9b"));  // DEL and a C1 control (CSI)
  EXPECT_EQ("\\xc0\\xaf", EscapeName("\xc0\xaf"));           // overlong '/'
  EXPECT_EQ("\\xed\\xa0\\x80", EscapeName("\xed\xa0\x80"));  // a surrogate
  EXPECT_EQ("\\xf4\\x90\\x80\\x80", EscapeName("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_EQ("\\xe6\\x97", EscapeName("\xe6\x97"));                    // a truncated sequence
  EXPECT_EQ("\\x00", EscapeName(std::string_view("\0", 1)));
  EXPECT_EQ("", EscapeName(""));
  // Whatever the input, the output is valid UTF-8 for a strict JSON encoder and one line.
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  for (const std::string& input : {every_byte, std::string("\xc3\x28\xa0\xa1\xe2\x28\xa1")}) {
    std::string escaped = EscapeName(input);
    EXPECT_NO_THROW((void)nlohmann::json(escaped).dump());
    EXPECT_EQ(std::string::npos, escaped.find('\n'));
  }
}

}  // namespace
}  // namespace envelopefs
