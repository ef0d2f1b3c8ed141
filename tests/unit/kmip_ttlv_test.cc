// KMIP TTLV encoding (kmip_ttlv.h): the spec's examples, round trips, and the decoder's refusal
// of every malformed or oversized message a hostile key server could send.
#include "envelopefs/kmip_ttlv.h"

#include <gtest/gtest.h>

#include "envelopefs/error.h"

namespace envelopefs {
namespace {

std::vector<uint8_t> Hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string DecodeError(const std::vector<uint8_t>& bytes) {
  try {
    DecodeTtlv(bytes);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat);
    return e.what();
  }
  return "";
}

// KMIP 1.2 spec, 9.1.2 examples.
TEST(KmipTtlv, EncodesTheSpecExamples) {
  EXPECT_EQ(EncodeTtlv(TtlvInteger(0x420020, 8)), Hex("42002002000000040000000800000000"));
  EXPECT_EQ(EncodeTtlv(TtlvEnum(0x420020, 255)), Hex("4200200500000004000000FF00000000"));
  EXPECT_EQ(EncodeTtlv(TtlvBool(0x420020, true)), Hex("42002006000000080000000000000001"));
  EXPECT_EQ(EncodeTtlv(TtlvText(0x420020, "Hello World")),
            Hex("420020070000000B48656C6C6F20576F726C640000000000"));
  std::vector<uint8_t> three = {1, 2, 3};
  EXPECT_EQ(EncodeTtlv(TtlvBytes(0x420020, three)), Hex("42002008000000030102030000000000"));
  EXPECT_EQ(
      EncodeTtlv(TtlvStructure(0x420020, {TtlvEnum(0x420004, 254), TtlvInteger(0x420005, 255)})),
      Hex("42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000"));
}

TEST(KmipTtlv, DecodesWhatItEncodes) {
  std::vector<uint8_t> key(48, 0x5a);
  TtlvItem message = TtlvStructure(
      0x420078, {TtlvStructure(0x420077, {TtlvInteger(0x42000D, 1)}),
                 TtlvStructure(0x42000F, {TtlvEnum(0x42005C, 0x1F), TtlvText(0x420094, "id-7"),
                                          TtlvBytes(0x4200C2, key), TtlvBool(0x420008, false),
                                          TtlvInteger(0x420001, -3)})});
  std::vector<uint8_t> bytes = EncodeTtlv(message);
  EXPECT_EQ(TtlvMessageSize(bytes), bytes.size());
  TtlvItem back = DecodeTtlv(bytes);
  EXPECT_EQ(EncodeTtlv(back), bytes);
  const TtlvItem* batch = back.Find(0x42000F);
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->Find(0x42005C)->number, 0x1F);
  EXPECT_EQ(batch->Find(0x420094)->text(), "id-7");
  EXPECT_EQ(batch->Find(0x4200C2)->bytes, key);
  EXPECT_EQ(batch->Find(0x420001)->number, -3);
  EXPECT_EQ(batch->Find(0x420099), nullptr);
}

TEST(KmipTtlv, RefusesMalformedMessages) {
  EXPECT_NE(DecodeError({}), "");
  EXPECT_NE(DecodeError(Hex("4200200200000004")), "");                    // truncated
  EXPECT_NE(DecodeError(Hex("42002002000000050000000800000000")), "");    // bad length
  EXPECT_NE(DecodeError(Hex("420020020000000400000008000000FF")), "");    // padding
  EXPECT_NE(DecodeError(Hex("4200200B000000040000000800000000")), "");    // unknown type
  EXPECT_NE(DecodeError(Hex("42002006000000080000000000000002")), "");    // boolean 2
  EXPECT_NE(DecodeError(Hex("4200200200000004000000080000000000")), "");  // trailing
  EXPECT_NE(DecodeError(Hex("420020070000FFFF48656C6C6F20576F")), "");    // too long
  // A structure whose child runs past the structure's end.
  EXPECT_NE(DecodeError(Hex("420020010000000842000407000000100000000000000000")), "");
  std::string message = DecodeError(Hex("42002002000000050000000800000000"));
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_NE(message.find("malformed KMIP message from the server"), std::string::npos) << message;
}

TEST(KmipTtlv, BoundsDepthItemsAndSize) {
  TtlvItem deep = TtlvInteger(0x420001, 1);
  for (int i = 0; i < kMaxTtlvDepth + 1; ++i) deep = TtlvStructure(0x420002, {deep});
  EXPECT_NE(DecodeError(EncodeTtlv(deep)).find("nested too deep"), std::string::npos);
  std::vector<TtlvItem> many(kMaxTtlvItems + 1, TtlvInteger(0x420001, 1));
  EXPECT_NE(DecodeError(EncodeTtlv(TtlvStructure(0x420002, many))).find("too many items"),
            std::string::npos);
  std::vector<uint8_t> huge = Hex("4200780100100000");  // 1 MiB + header
  try {
    TtlvMessageSize(huge);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too long"), std::string::npos);
  }
  EXPECT_THROW(TtlvMessageSize(Hex("4200780200000008")), Error);  // not a structure
}

}  // namespace
}  // namespace envelopefs
