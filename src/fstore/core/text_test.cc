#include "fstore/core/text.h"

#include <gtest/gtest.h>

namespace fstore {
namespace {

TEST(TextTest, AsciiLowerLeavesNonAsciiBytes) {
  EXPECT_EQ(AsciiLower("User_ID \xC3\x84"), "user_id \xC3\x84");
}

TEST(TextTest, HexRoundTripsEveryByte) {
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  const std::string hex = HexEncode(bytes);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(504), "fcfdfeff");
  EXPECT_EQ(HexDecode(hex), bytes);
  EXPECT_EQ(HexDecode("ABcd"), std::string("\xab\xcd"));
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexDecode(""), std::string());
}

TEST(TextTest, HexDecodeRefusesOddLengthsAndNonDigits) {
  EXPECT_EQ(HexDecode("abc"), std::nullopt);
  EXPECT_EQ(HexDecode("zz"), std::nullopt);
  EXPECT_EQ(HexDecode("0g"), std::nullopt);
  EXPECT_EQ(HexDecode(" 00"), std::nullopt);
}

}  // namespace
}  // namespace fstore
