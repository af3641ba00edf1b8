#include "fstore/core/json_text.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

namespace fstore {
namespace {

namespace json = boost::json;

TEST(JsonTextTest, DoublesAreWrittenInTheirShortestPlainForm) {
  EXPECT_EQ(SerializeJson(json::value(5.2)), "5.2");
  EXPECT_EQ(SerializeJson(json::value(-1.0)), "-1.0");
  EXPECT_EQ(SerializeJson(json::value(0.001)), "0.001");
  EXPECT_EQ(SerializeJson(json::value(0.1)), "0.1");
  EXPECT_EQ(SerializeJson(json::value(-0.0)), "-0.0");
  EXPECT_EQ(SerializeJson(json::value(1e300)), "1e+300");
  EXPECT_EQ(SerializeJson(json::value(1e-7)), "1e-07");
  EXPECT_EQ(SerializeJson(json::value(123456789.0)), "123456789.0");
  // No JSON form: null, as Boost.JSON would not write valid JSON for them.
  EXPECT_EQ(SerializeJson(json::value(std::numeric_limits<double>::quiet_NaN())), "null");
  EXPECT_EQ(SerializeJson(json::value(-std::numeric_limits<double>::infinity())), "null");
  // Boost.JSON's own serializer, which this replaces, writes 5.2E0.
  EXPECT_EQ(json::serialize(json::value(5.2)), "5.2E0");
}

TEST(JsonTextTest, EveryKindIsWrittenAsBoostWritesItButDoubles) {
  const char* text =
      R"({"null":null,"t":true,"f":false,"i":-42,"u":18446744073709551615,)"
      R"("s":"a\"b\\c\n\t\u0001\u00e9","a":[1,"x",[],{}],"o":{"k":{"n":null}},"e":"",)"
      R"("neg":-9223372036854775808})";
  const json::value v = json::parse(text);
  EXPECT_EQ(SerializeJson(v), json::serialize(v));
}

TEST(JsonTextTest, WhatIsWrittenParsesBackToTheSameValue) {
  // Doubles read back exactly with a correctly rounded parser (from_chars;
  // Boost 1.81's parser is not always exact in the last bit).
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (i % 2) d = std::ldexp(static_cast<double>(rng() % 1000000), -static_cast<int>(rng() % 60));
    std::string text;
    AppendJsonDouble(d, &text);
    if (!std::isfinite(d)) {
      EXPECT_EQ(text, "null");
      continue;
    }
    double back = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), back);
    ASSERT_TRUE(ec == std::errc() && end == text.data() + text.size()) << text;
    ASSERT_EQ(std::memcmp(&back, &d, sizeof d), 0) << text;
    ASSERT_NE(text.find_first_of(".e"), std::string::npos) << text;  // reads back as a double
  }
  // Strings of any bytes but control characters come back as they were.
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (int k = 0; k < 12; ++k) s.push_back(static_cast<char>(byte(rng) & 0x7f));
    json::object o;
    o["s"] = s;
    o["x"] = 0.5;
    const std::string text = SerializeJson(o);
    json::error_code ec;
    const json::value back = json::parse(text, ec);
    ASSERT_FALSE(ec) << text;
    EXPECT_EQ(back.at("s").get_string(), s) << text;
    EXPECT_EQ(back.at("x").get_double(), 0.5) << text;
  }
}

}  // namespace
}  // namespace fstore
