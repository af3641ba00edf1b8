#include "fstore/core/time.h"

#include <limits>
#include <string>

#include <gmock/gmock.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;

/// 2024-01-01T00:00:00Z.
constexpr TimestampMicros k20240101 = 1704067200LL * kMicrosPerSecond;

TEST(ParseTimestampTest, DateOnlyIsMidnightUtc) {
  ASSERT_OK_AND_ASSIGN(auto t, ParseTimestamp("2024-01-01"));
  EXPECT_EQ(t, k20240101);
  ASSERT_OK_AND_ASSIGN(auto epoch, ParseTimestamp("1970-01-01"));
  EXPECT_EQ(epoch, 0);
}

TEST(ParseTimestampTest, DateAndTime) {
  ASSERT_OK_AND_ASSIGN(auto t, ParseTimestamp("2024-01-01T10:00:00"));
  EXPECT_EQ(t, k20240101 + 10 * kMicrosPerHour);
  ASSERT_OK_AND_ASSIGN(auto end_of_month, ParseTimestamp("2024-01-31T23:59:59"));
  EXPECT_EQ(end_of_month, k20240101 + 31 * kMicrosPerDay - kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(auto lower_t, ParseTimestamp("2024-01-01t10:00:00"));
  EXPECT_EQ(lower_t, t);
}

TEST(ParseTimestampTest, SpaceSeparatorAndFraction) {
  ASSERT_OK_AND_ASSIGN(auto half, ParseTimestamp("2024-01-01 10:00:00.5"));
  EXPECT_EQ(half, k20240101 + 10 * kMicrosPerHour + 500000);
  ASSERT_OK_AND_ASSIGN(auto micro, ParseTimestamp("2024-01-01 10:00:00.000001"));
  EXPECT_EQ(micro, k20240101 + 10 * kMicrosPerHour + 1);
  ASSERT_OK_AND_ASSIGN(auto full, ParseTimestamp("2024-01-01T10:00:00.123456"));
  EXPECT_EQ(full, k20240101 + 10 * kMicrosPerHour + 123456);
  ASSERT_OK_AND_ASSIGN(auto ms, ParseTimestamp("2024-01-01T10:00:00.123"));
  EXPECT_EQ(ms, k20240101 + 10 * kMicrosPerHour + 123000);
}

TEST(ParseTimestampTest, ZuluAndOffsets) {
  const TimestampMicros ten = k20240101 + 10 * kMicrosPerHour;
  ASSERT_OK_AND_ASSIGN(auto z, ParseTimestamp("2024-01-01T10:00:00Z"));
  EXPECT_EQ(z, ten);
  ASSERT_OK_AND_ASSIGN(auto lower_z, ParseTimestamp("2024-01-01T10:00:00z"));
  EXPECT_EQ(lower_z, ten);
  // 10:00 at +02:00 is 08:00 UTC.
  ASSERT_OK_AND_ASSIGN(auto plus, ParseTimestamp("2024-01-01T10:00:00+02:00"));
  EXPECT_EQ(plus, ten - 2 * kMicrosPerHour);
  ASSERT_OK_AND_ASSIGN(auto minus, ParseTimestamp("2024-01-01T10:00:00-05:30"));
  EXPECT_EQ(minus, ten + 5 * kMicrosPerHour + 30 * kMicrosPerMinute);
  ASSERT_OK_AND_ASSIGN(auto zero, ParseTimestamp("2024-01-01T10:00:00+00:00"));
  EXPECT_EQ(zero, ten);
  ASSERT_OK_AND_ASSIGN(auto frac, ParseTimestamp("2024-01-01T10:00:00.25+01:00"));
  EXPECT_EQ(frac, ten - kMicrosPerHour + 250000);
}

TEST(ParseTimestampTest, OffsetCrossesDayAndYear) {
  ASSERT_OK_AND_ASSIGN(auto t, ParseTimestamp("2024-01-01T01:00:00+02:00"));
  EXPECT_EQ(FormatTimestamp(t), "2023-12-31T23:00:00Z");
}

TEST(ParseTimestampTest, BeforeEpochIsNegative) {
  ASSERT_OK_AND_ASSIGN(auto t, ParseTimestamp("1969-12-31T23:59:59"));
  EXPECT_EQ(t, -kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(auto frac, ParseTimestamp("1969-12-31T23:59:59.999999"));
  EXPECT_EQ(frac, -1);
  ASSERT_OK_AND_ASSIGN(auto moon, ParseTimestamp("1969-07-20T20:17:40Z"));
  EXPECT_EQ(moon, -14182940LL * kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(auto old, ParseTimestamp("1900-01-01"));
  EXPECT_EQ(old, -2208988800LL * kMicrosPerSecond);
}

TEST(ParseTimestampTest, LeapDays) {
  ASSERT_OK_AND_ASSIGN(auto leap, ParseTimestamp("2024-02-29"));
  EXPECT_EQ(leap, k20240101 + (31 + 28) * kMicrosPerDay);
  EXPECT_OK(ParseTimestamp("2000-02-29"));
  EXPECT_FALSE(ParseTimestamp("2023-02-29").ok());
  EXPECT_FALSE(ParseTimestamp("1900-02-29").ok());  // century, not a leap year
}

TEST(ParseTimestampTest, Extremes) {
  ASSERT_OK_AND_ASSIGN(auto first, ParseTimestamp("0000-01-01T00:00:00Z"));
  EXPECT_EQ(FormatTimestamp(first), "0000-01-01T00:00:00Z");
  ASSERT_OK_AND_ASSIGN(auto last, ParseTimestamp("9999-12-31T23:59:59.999999Z"));
  EXPECT_EQ(FormatTimestamp(last), "9999-12-31T23:59:59.999999Z");
}

class ParseTimestampRefusesTest
    : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(ParseTimestampRefusesTest, WithMessage) {
  const auto& [text, expected] = GetParam();
  auto result = ParseTimestamp(text);
  ASSERT_FALSE(result.ok()) << text << " parsed as " << FormatTimestamp(*result);
  const Status& status = result.status();
  EXPECT_EQ(ErrorCodeOf(status), ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(expected)) << text;
  EXPECT_THAT(status.message(), HasSubstr("expected ISO-8601")) << text;
  EXPECT_THAT(status.message(), HasSubstr("\"" + text.substr(0, 20))) << text;
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, ParseTimestampRefusesTest,
    ::testing::Values(
        std::pair<std::string, std::string>{"", "it is empty"},
        std::pair<std::string, std::string>{"yesterday", "the date must be YYYY-MM-DD"},
        std::pair<std::string, std::string>{"2024/01/01", "the date must be YYYY-MM-DD"},
        std::pair<std::string, std::string>{"24-01-01", "the date must be YYYY-MM-DD"},
        std::pair<std::string, std::string>{"2024-1-1", "the date must be YYYY-MM-DD"},
        std::pair<std::string, std::string>{"2024-02-30", "day 30 does not exist in 2024-02"},
        std::pair<std::string, std::string>{"2024-04-31", "day 31 does not exist in 2024-04"},
        std::pair<std::string, std::string>{"2024-01-00", "day 00 does not exist"},
        std::pair<std::string, std::string>{"2024-13-01", "month 13 is out of range 01-12"},
        std::pair<std::string, std::string>{"2024-00-01", "month 00 is out of range"},
        std::pair<std::string, std::string>{"2024-01-01T24:00:00", "hour 24 is out of range 00-23"},
        std::pair<std::string, std::string>{"2024-01-01T10:60:00", "minute 60 is out of range"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:60", "second 60 is out of range"},
        std::pair<std::string, std::string>{"2024-01-01T10:00", "the time must be hh:mm:ss"},
        std::pair<std::string, std::string>{"2024-01-01T1:00:00", "the time must be hh:mm:ss"},
        std::pair<std::string, std::string>{"2024-01-01T", "the time must be hh:mm:ss"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00.1234567",
                                            "7 fractional digits, but at most 6"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00.", "'.' must be followed by"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00Zjunk", "unexpected trailing \"junk\""},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00 ", "unexpected trailing"},
        std::pair<std::string, std::string>{"2024-01-01x", "unexpected \"x\" after the date"},
        std::pair<std::string, std::string>{"2024-01-01Z", "unexpected \"Z\" after the date"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00+2", "must be +hh:mm or -hh:mm"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00+0200", "must be +hh:mm or -hh:mm"},
        std::pair<std::string, std::string>{"2024-01-01T10:00:00+24:00", "is out of range"},
        std::pair<std::string, std::string>{"-2024-01-01", "the date must be YYYY-MM-DD"}));

TEST(ParseTimestampTest, LongGarbageIsShortenedInTheMessage) {
  const std::string text(10000, 'x');
  auto result = ParseTimestamp(text);
  ASSERT_FALSE(result.ok());
  EXPECT_LT(result.status().message().size(), 300u);
}

TEST(FormatTimestampTest, WholeSecondsHaveNoFraction) {
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(k20240101 + 10 * kMicrosPerHour), "2024-01-01T10:00:00Z");
}

TEST(FormatTimestampTest, FractionsAlwaysHaveSixDigits) {
  EXPECT_EQ(FormatTimestamp(k20240101 + 500000), "2024-01-01T00:00:00.500000Z");
  EXPECT_EQ(FormatTimestamp(k20240101 + 123456), "2024-01-01T00:00:00.123456Z");
  EXPECT_EQ(FormatTimestamp(k20240101 + 1), "2024-01-01T00:00:00.000001Z");
}

TEST(FormatTimestampTest, BeforeEpochRoundsTowardsThePast) {
  EXPECT_EQ(FormatTimestamp(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(FormatTimestamp(-kMicrosPerSecond), "1969-12-31T23:59:59Z");
  EXPECT_EQ(FormatTimestamp(-kMicrosPerDay), "1969-12-31T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(-kMicrosPerDay - 1), "1969-12-30T23:59:59.999999Z");
}

TEST(FormatTimestampTest, ExtremeValuesDoNotCrash) {
  // int64 micros span about +-292277 years, beyond chrono::year's range.
  EXPECT_EQ(FormatTimestamp(std::numeric_limits<int64_t>::max()),
            "+294247-01-10T04:00:54.775807Z");
  EXPECT_EQ(FormatTimestamp(std::numeric_limits<int64_t>::min()),
            "-290308-12-21T19:59:05.224192Z");
}

TEST(TimestampRoundTripTest, FormatThenParse) {
  for (const std::string text :
       {"1970-01-01T00:00:00Z", "2024-01-01T10:00:00Z", "2024-02-29T12:34:56.789012Z",
        "1969-07-20T20:17:40Z", "1900-03-01T00:00:00.000001Z", "1600-02-29T23:59:59.999999Z",
        "2100-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"}) {
    ASSERT_OK_AND_ASSIGN(auto micros, ParseTimestamp(text));
    EXPECT_EQ(FormatTimestamp(micros), text);
  }
}

TEST(TimestampRoundTripTest, ParseThenFormatOverManyValues) {
  // Steps of a prime number of microseconds across ~600 years around the epoch.
  const int64_t step = 9'876'543'210'987;
  for (int64_t micros = -300 * 365 * kMicrosPerDay; micros < 300 * 365 * kMicrosPerDay;
       micros += step) {
    const std::string text = FormatTimestamp(micros);
    ASSERT_OK_AND_ASSIGN(auto parsed, ParseTimestamp(text));
    ASSERT_EQ(parsed, micros) << text;
  }
}

TEST(NowMicrosTest, IsRecentAndMonotonicEnough) {
  const TimestampMicros now = NowMicros();
  EXPECT_GT(now, k20240101);
  EXPECT_LE(now, NowMicros());
}

}  // namespace
}  // namespace fstore
