// SharedRecord and the JSON text of feature values: the record built from
// an OnlineRecord gives it back exactly, finds values by name from a cursor,
// and holds each value's JSON text as the REST API serves it.

#include "fstore/online/shared_record.h"

#include <cmath>
#include <limits>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fstore/online/feature_value_json.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/security/encryption.h"

namespace fstore {
namespace {

std::string Json(const FeatureValue& v) {
  std::string out;
  AppendFeatureValueJson(v, &out);
  return out;
}

OnlineRecord EveryType() {
  OnlineRecord r;
  r.event_time = -1'234'567;
  r.created_time = 42;
  r.values = {{"null", std::monostate{}},
              {"int", int64_t{-42}},
              {"int_max", std::numeric_limits<int64_t>::max()},
              {"float", 0.1},
              {"nan", std::nan("")},
              {"neg_zero", -0.0},
              {"string", std::string("a \"quoted\"\\ line\n\x01 h\xC3\xA9")},
              {"nul_inside", std::string("a\0b", 3)},
              {"bool", true},
              {"ts", TimestampValue{1'700'000'000'000'001}},
              {"list", ListValue{{int64_t{1}, std::monostate{}, 2.5, ListValue{{true}}}}},
              {"empty_list", ListValue{}},
              {"", int64_t{0}},
              {std::string(200, 'n'), std::string(300, 'v')}};  // lengths past one varint byte
  return r;
}

TEST(FeatureValueJsonTest, RendersEachTypeAsTheApiServesIt) {
  EXPECT_EQ(Json(std::monostate{}), "null");
  EXPECT_EQ(Json(int64_t{-42}), "-42");
  EXPECT_EQ(Json(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(Json(2.0), "2.0");  // a float stays a float
  EXPECT_EQ(Json(0.1), "0.1");  // shortest round-trip digits
  EXPECT_EQ(Json(1e300), "1e+300");
  EXPECT_EQ(Json(-0.0), "-0.0");
  EXPECT_EQ(Json(std::nan("")), "null");
  EXPECT_EQ(Json(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(Json(true), "true");
  EXPECT_EQ(Json(false), "false");
  EXPECT_EQ(Json(std::string("plain héllo")), "\"plain héllo\"");
  EXPECT_EQ(Json(std::string("q\"b\\n\n\t\r\b\f\x01\x1f")),
            "\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u0001\\u001f\"");
  EXPECT_EQ(Json(std::string("a\0b", 3)), "\"a\\u0000b\"");
  EXPECT_EQ(Json(TimestampValue{0}), "\"1970-01-01T00:00:00Z\"");
  EXPECT_EQ(Json(ListValue{{int64_t{1}, std::monostate{}, 2.0, std::string("x")}}),
            "[1,null,2.0,\"x\"]");
  EXPECT_EQ(Json(ListValue{}), "[]");
}

TEST(FeatureValueJsonTest, IsValidJsonThatParsesBackToTheValue) {
  for (double d : {0.1, 1.0 / 3, 123.456789012345678, -1e-300, 5e-324, 1.7976931348623157e308}) {
    const auto parsed = boost::json::parse(Json(d));
    ASSERT_TRUE(parsed.is_double()) << Json(d);
    EXPECT_EQ(parsed.as_double(), d) << Json(d);
  }
  const std::string s("\x01\x7f zero\0 \"\\ \xE6\x97\xA5", 15);
  const auto parsed = boost::json::parse(Json(s));
  ASSERT_TRUE(parsed.is_string());
  EXPECT_EQ(std::string(parsed.as_string()), s);
}

TEST(SharedRecordTest, GivesBackTheRecordItWasBuiltFrom) {
  const OnlineRecord r = EveryType();
  const SharedRecord shared(r);
  EXPECT_EQ(shared.event_time(), r.event_time);
  EXPECT_EQ(shared.created_time(), r.created_time);
  OnlineRecord back = shared.ToRecord();
  ASSERT_EQ(back.values.size(), r.values.size());
  for (size_t i = 0; i < r.values.size(); ++i) {
    EXPECT_EQ(back.values[i].first, r.values[i].first);
    if (r.values[i].first == "nan") {
      EXPECT_TRUE(std::isnan(std::get<double>(back.values[i].second)));
    } else {
      EXPECT_EQ(back.values[i].second, r.values[i].second) << r.values[i].first;
    }
  }
  EXPECT_TRUE(std::signbit(std::get<double>(back.values[5].second)));
  EXPECT_EQ(SharedRecord(OnlineRecord{}).ToRecord(), OnlineRecord{});
}

TEST(SharedRecordTest, FindsEachValueWithItsJsonText) {
  const OnlineRecord r = EveryType();
  const SharedRecord shared(r);
  // In the record's order, each found right at the cursor.
  size_t cursor = 0;
  for (const auto& [name, value] : r.values) {
    auto found = shared.Find(name, &cursor);
    ASSERT_TRUE(found) << name;
    EXPECT_EQ(found->name, name);
    EXPECT_EQ(found->json, Json(value)) << name;
    if (name != "nan") {
      EXPECT_EQ(found->Decode(), value) << name;
    }
  }
  // Out of order: found from the start again.
  cursor = 0;
  ASSERT_TRUE(shared.Find("bool", &cursor));
  auto first = shared.Find("null", &cursor);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->json, "null");
  auto next = shared.Find("int", &cursor);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->json, "-42");
  // Absent names, from any cursor; a cursor past the end starts over.
  cursor = 0;
  EXPECT_FALSE(shared.Find("missing", &cursor));
  EXPECT_FALSE(shared.Find("in", &cursor));  // a prefix of a name is not the name
  cursor = size_t{1} << 40;
  EXPECT_TRUE(shared.Find("float", &cursor));
  size_t empty_cursor = 0;
  EXPECT_FALSE(SharedRecord(OnlineRecord{}).Find("x", &empty_cursor));
}

TEST(SharedRecordTest, DecodedFromStoredBytesIsTheOneBuiltFromTheRecord) {
  using namespace std::literals;
  OnlineRecord r = EveryType();
  // A value past the per-thread scratch kept between records (64 KiB).
  r.values.emplace_back("big", std::string(100'000, 'x'));
  auto cipher = *Cipher::FromHex(std::string(64, 'c'));
  std::string sealed;
  ASSERT_TRUE(AppendOnlineRecord(r, cipher.get(), "fs\0k"sv, &sealed).ok());
  const SharedRecord built(r);
  for (const Cipher* key : {static_cast<const Cipher*>(nullptr), cipher.get()}) {
    auto decoded = SharedRecord::Decode(key ? sealed : EncodeOnlineRecord(r), key, "fs\0k"sv);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    const SharedRecord& shared = **decoded;
    EXPECT_EQ(shared.event_time(), r.event_time);
    EXPECT_EQ(shared.created_time(), r.created_time);
    EXPECT_EQ(EncodeOnlineRecord(shared.ToRecord()), EncodeOnlineRecord(r));
    size_t a = 0;
    size_t b = 0;
    for (const auto& entry : r.values) {
      auto mine = shared.Find(entry.first, &a);
      auto theirs = built.Find(entry.first, &b);
      ASSERT_TRUE(mine && theirs) << entry.first;
      EXPECT_EQ(mine->json, theirs->json) << entry.first;
      EXPECT_EQ(mine->typed, theirs->typed) << entry.first;
    }
  }
  // Another small record right after the big one: built from a fresh scratch.
  auto small = SharedRecord::Decode(EncodeOnlineRecord(EveryType()), nullptr, {});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(EncodeOnlineRecord((*small)->ToRecord()), EncodeOnlineRecord(EveryType()));
}

TEST(SharedRecordTest, DecodeRefusesWhatTheCodecRefuses) {
  using namespace std::literals;
  const std::string bytes = EncodeOnlineRecord(EveryType());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(SharedRecord::Decode(std::string_view(bytes.data(), n), nullptr, {}).ok()) << n;
  }
  auto cipher = *Cipher::FromHex(std::string(64, 'c'));
  auto clear = SharedRecord::Decode(bytes, cipher.get(), "fs\0k"sv);
  ASSERT_FALSE(clear.ok());
  EXPECT_NE(clear.status().message().find("written without encryption"), std::string::npos);
  std::string sealed;
  ASSERT_TRUE(AppendOnlineRecord(EveryType(), cipher.get(), "fs\0k"sv, &sealed).ok());
  auto moved = SharedRecord::Decode(sealed, cipher.get(), "fs\0other"sv);
  ASSERT_FALSE(moved.ok());
  EXPECT_NE(moved.status().message().find("authentication failed"), std::string::npos);
}

}  // namespace
}  // namespace fstore
