#include "fstore/online/online_record_codec.h"

#include <limits>
#include <random>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

OnlineRecord EveryType() {
  OnlineRecord r;
  r.event_time = -5;
  r.created_time = 1'700'000'000'000'000;
  r.values = {{"null", std::monostate{}},
              {"int", std::numeric_limits<int64_t>::min()},
              {"float", -1.5},
              {"str", std::string("h\xC3\xA9llo\0x", 7)},
              {"bool", true},
              {"ts", TimestampValue{-1}},
              {"list", ListValue{{int64_t{1}, std::monostate{}, ListValue{{std::string("nested")}}}}},
              {"", ListValue{}}};
  return r;
}

TEST(OnlineRecordCodecTest, RoundTrip) {
  OnlineRecord record = EveryType();
  std::string bytes = EncodeOnlineRecord(record);
  ASSERT_OK_AND_ASSIGN(auto decoded, DecodeOnlineRecord(bytes));
  EXPECT_EQ(decoded, record);
  ASSERT_OK_AND_ASSIGN(auto times, DecodeOnlineRecordTimes(bytes));
  EXPECT_EQ(times, std::make_pair(record.event_time, record.created_time));
  std::string appended = "prefix";
  AppendOnlineRecord(record, &appended);
  EXPECT_EQ(appended, "prefix" + bytes);
}

TEST(OnlineRecordCodecTest, FormatIsPinned) {
  // Stored values outlive the code: this layout must not change under version 1.
  OnlineRecord r{-1, 1, {{"a", int64_t{-2}}, {"b", 1.0}, {"c", std::string("z")}, {"d", false},
                        {"e", TimestampValue{64}}, {"f", std::monostate{}},
                        {"g", ListValue{{int64_t{1}}}}}};
  std::string expected(
      "\x01"                                  // version
      "\x01\x02"                              // zigzag(-1), zigzag(1)
      "\x07"                                  // 7 values
      "\x01" "a" "\x01\x03"                   // int -2
      "\x01" "b" "\x02\x00\x00\x00\x00\x00\x00\xf0\x3f"  // float 1.0
      "\x01" "c" "\x03\x01z"                  // string "z"
      "\x01" "d" "\x04\x00"                   // bool false
      "\x01" "e" "\x05\x80\x01"               // timestamp 64 (zigzag 128)
      "\x01" "f" "\x00"                       // null
      "\x01" "g" "\x06\x01\x01\x02",          // list [1]
      42);
  EXPECT_EQ(EncodeOnlineRecord(r), expected);
}

TEST(OnlineRecordCodecTest, EveryTruncationIsAnError) {
  std::string bytes = EncodeOnlineRecord(EveryType());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto decoded = DecodeOnlineRecord(std::string_view(bytes.data(), n));
    ASSERT_FALSE(decoded.ok()) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(ErrorCodeOf(decoded.status()), ErrorCode::kInternal);
  }
  EXPECT_FALSE(DecodeOnlineRecordTimes("").ok());
  EXPECT_FALSE(DecodeOnlineRecordTimes("\x01\x80").ok());
}

TEST(OnlineRecordCodecTest, CorruptBytesAreErrors) {
  auto fails = [](std::string_view bytes) { return !DecodeOnlineRecord(bytes).ok(); };
  EXPECT_TRUE(fails(std::string("\x02\x00\x00\x00", 4)));             // unknown version
  EXPECT_TRUE(fails(std::string("\x01\x00\x00\x01\x01" "a\x09", 7)));  // unknown tag
  EXPECT_TRUE(fails(std::string("\x01\x00\x00\x01\x01" "a\x04\x02", 8)));  // bool 2
  EXPECT_TRUE(fails(std::string("\x01\x00\x00\x00\x00", 5)));         // trailing byte
  // Counts far beyond the bytes are refused before anything is allocated.
  EXPECT_TRUE(fails("\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
  EXPECT_TRUE(fails(std::string("\x01\x00\x00\x01\x01" "a\x06\xff\xff\xff\xff\x0f", 11)));
  EXPECT_TRUE(fails(std::string("\x01\x00\x00\x01\x01" "a\x03\xff\xff\xff\xff\x0f", 11)));
  // A varint longer than 10 bytes.
  EXPECT_TRUE(fails("\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"));
  // Lists nested deeper than the limit (each level: tag 6, count 1).
  std::string deep("\x01\x00\x00\x01\x01" "a", 6);
  for (int i = 0; i < 1000; ++i) deep += "\x06\x01";
  deep += std::string("\x00", 1);
  EXPECT_TRUE(fails(deep));
}

TEST(OnlineRecordCodecTest, RandomMutationsNeverCrash) {
  std::string bytes = EncodeOnlineRecord(EveryType());
  std::mt19937 rng(42);
  int decoded_ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string mutated = bytes;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      mutated[rng() % mutated.size()] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) mutated.resize(rng() % mutated.size());
    if (DecodeOnlineRecord(mutated).ok()) ++decoded_ok;  // some mutations stay valid
  }
  SUCCEED() << decoded_ok << " mutations still decoded";
}

/// Collects what VisitOnlineRecord hands over.
struct Collected : OnlineRecordVisitor {
  bool take_values = true;
  OnlineRecord record;
  std::vector<std::string> encodings;
  bool Times(TimestampMicros event_time, TimestampMicros created_time) override {
    record.event_time = event_time;
    record.created_time = created_time;
    return take_values;
  }
  void Value(std::string_view name, const FeatureValue& value, std::string_view encoded) override {
    record.values.emplace_back(std::string(name), value);
    encodings.emplace_back(encoded);
  }
};

TEST(OnlineRecordCodecTest, VisitSeesWhatDecodeGives) {
  using namespace std::literals;
  const OnlineRecord record = EveryType();
  auto cipher = *Cipher::FromHex(std::string(64, 'a'));
  std::string sealed;
  ASSERT_OK(AppendOnlineRecord(record, cipher.get(), "fs\0key"sv, &sealed));
  for (const Cipher* key : {static_cast<const Cipher*>(nullptr), cipher.get()}) {
    const std::string bytes = key ? sealed : EncodeOnlineRecord(record);
    Collected got;
    ASSERT_OK(VisitOnlineRecord(bytes, key, "fs\0key"sv, &got));
    EXPECT_EQ(got.record, record);
    ASSERT_EQ(got.encodings.size(), record.values.size());
    for (size_t i = 0; i < record.values.size(); ++i) {
      std::string expected;
      AppendFeatureValue(record.values[i].second, &expected);
      EXPECT_EQ(got.encodings[i], expected) << record.values[i].first;
    }
    // Times answered false: the times, no values (a sealed record not opened).
    Collected times_only;
    times_only.take_values = false;
    ASSERT_OK(VisitOnlineRecord(bytes, key, "fs\0other"sv, &times_only));
    EXPECT_EQ(times_only.record.event_time, record.event_time);
    EXPECT_TRUE(times_only.record.values.empty());
  }
  // The same errors as DecodeOnlineRecord.
  Collected wrong;
  auto no_key = VisitOnlineRecord(sealed, nullptr, "fs\0key"sv, &wrong);
  EXPECT_NE(no_key.message().find("no encryption key is configured"), std::string::npos);
  auto other_ad = VisitOnlineRecord(sealed, cipher.get(), "fs\0other"sv, &wrong);
  EXPECT_NE(other_ad.message().find("authentication failed"), std::string::npos);
  auto clear = VisitOnlineRecord(EncodeOnlineRecord(record), cipher.get(), "fs\0key"sv, &wrong);
  EXPECT_NE(clear.message().find("written without encryption"), std::string::npos);
}

TEST(OnlineRecordCodecTest, VisitRefusesWhatDecodeRefuses) {
  const std::string bytes = EncodeOnlineRecord(EveryType());
  for (size_t n = 0; n < bytes.size(); ++n) {
    Collected got;
    Status st = VisitOnlineRecord(std::string_view(bytes.data(), n), nullptr, {}, &got);
    ASSERT_FALSE(st.ok()) << "prefix of " << n << " bytes visited";
    EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kInternal);
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string mutated = bytes;
    mutated[rng() % mutated.size()] = static_cast<char>(rng());
    if (rng() % 4 == 0) mutated.resize(rng() % mutated.size());
    Collected got;
    auto decoded = DecodeOnlineRecord(mutated);
    Status st = VisitOnlineRecord(mutated, nullptr, {}, &got);
    ASSERT_EQ(st.ok(), decoded.ok()) << i;
    if (st.ok()) {
      // NaN != NaN: compare the encodings.
      EXPECT_EQ(EncodeOnlineRecord(got.record), EncodeOnlineRecord(*decoded));
    }
  }
}

TEST(EntityKeyTest, EncodingIsPinnedAndRoundTrips) {
  EXPECT_EQ(EncodeEntityKey({int64_t{1}}), std::string("\x01\x80\x00\x00\x00\x00\x00\x00\x01", 9));
  EXPECT_EQ(EncodeEntityKey({int64_t{-1}}), std::string("\x01\x7f\xff\xff\xff\xff\xff\xff\xff", 9));
  EXPECT_EQ(EncodeEntityKey({std::string("ab")}), std::string("\x02\x02" "ab", 4));
  EXPECT_EQ(EncodeEntityKey({std::string("")}), std::string("\x02\x00", 2));
  EntityKey composite{std::string(200, 'x'), int64_t{std::numeric_limits<int64_t>::min()},
                      std::string("日本"), std::string("a\0b", 3)};
  ASSERT_OK_AND_ASSIGN(auto decoded, DecodeEntityKey(EncodeEntityKey(composite)));
  EXPECT_EQ(decoded, composite);
  // Integers sort like numbers.
  EXPECT_LT(EncodeEntityKey({int64_t{-5}}), EncodeEntityKey({int64_t{3}}));
  EXPECT_LT(EncodeEntityKey({std::numeric_limits<int64_t>::min()}), EncodeEntityKey({int64_t{-1}}));
}

TEST(EntityKeyTest, DistinctKeysHaveDistinctEncodings) {
  std::vector<EntityKey> keys = {
      {int64_t{7}}, {std::string("7")}, {std::string("a"), std::string("b")}, {std::string("ab")},
      {std::string("")}, {std::string(""), std::string("")}, {std::string("a"), int64_t{1}},
      {int64_t{1}, std::string("a")}, {int64_t{0}}, {std::string("\x01")}};
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t j = i + 1; j < keys.size(); ++j) {
      EXPECT_NE(EncodeEntityKey(keys[i]), EncodeEntityKey(keys[j])) << i << " vs " << j;
    }
  }
}

TEST(EntityKeyTest, CorruptBytesAreErrors) {
  EXPECT_FALSE(DecodeEntityKey("").ok());
  EXPECT_FALSE(DecodeEntityKey("\x03").ok());
  EXPECT_FALSE(DecodeEntityKey(std::string("\x01\x00\x00", 3)).ok());
  EXPECT_FALSE(DecodeEntityKey("\x02\x05" "ab").ok());
  EXPECT_FALSE(DecodeEntityKey("\x02\x80").ok());
  EXPECT_EQ(ErrorCodeOf(DecodeEntityKey("\x09").status()), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace fstore

namespace fstore {
namespace {

TEST(OnlineRecordCodecTest, SealedVersionKeepsTimesClearAndValuesSealed) {
  using namespace std::literals;
  auto cipher = *Cipher::FromHex(std::string(64, 'a'));
  OnlineRecord record = EveryType();
  std::string bytes;
  ASSERT_OK(AppendOnlineRecord(record, cipher.get(), "fs\0key"sv, &bytes));
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), kSealedOnlineRecordFormatVersion);
  EXPECT_EQ(bytes.find("nested"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(auto times, DecodeOnlineRecordTimes(bytes));
  EXPECT_EQ(times, std::make_pair(record.event_time, record.created_time));
  ASSERT_OK_AND_ASSIGN(auto decoded, DecodeOnlineRecord(bytes, cipher.get(), "fs\0key"sv));
  EXPECT_EQ(decoded, record);

  auto no_key = DecodeOnlineRecord(bytes);
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find("no encryption key is configured"), std::string::npos);
  auto other_key = DecodeOnlineRecord(bytes, Cipher::FromHex(std::string(64, 'b'))->get(), "fs\0key"sv);
  ASSERT_FALSE(other_key.ok());
  EXPECT_NE(other_key.status().message().find("sealed with a different encryption key"),
            std::string::npos);
  auto other_ad = DecodeOnlineRecord(bytes, cipher.get(), "fs\0other"sv);
  ASSERT_FALSE(other_ad.ok());
  EXPECT_NE(other_ad.status().message().find("authentication failed"), std::string::npos);
  auto clear = DecodeOnlineRecord(EncodeOnlineRecord(record), cipher.get(), "fs\0key"sv);
  ASSERT_FALSE(clear.ok());
  EXPECT_NE(clear.status().message().find("written without encryption"), std::string::npos);
}

}  // namespace
}  // namespace fstore
