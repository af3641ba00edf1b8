#include "fstore/core/duration.h"

#include <limits>
#include <ostream>
#include <string>

#include <gmock/gmock.h>

#include "fstore/core/time.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;

TEST(ParseDurationTest, EachUnit) {
  ASSERT_OK_AND_ASSIGN(auto w, ParseDuration("1w"));
  EXPECT_EQ(w, 7 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto d, ParseDuration("30d"));
  EXPECT_EQ(d, 30 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto h, ParseDuration("6h"));
  EXPECT_EQ(h, 6 * kMicrosPerHour);
  ASSERT_OK_AND_ASSIGN(auto m, ParseDuration("15m"));
  EXPECT_EQ(m, 15 * kMicrosPerMinute);
  ASSERT_OK_AND_ASSIGN(auto s, ParseDuration("45s"));
  EXPECT_EQ(s, 45 * kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(auto ms, ParseDuration("500ms"));
  EXPECT_EQ(ms, 500'000);
  ASSERT_OK_AND_ASSIGN(auto us, ParseDuration("250us"));
  EXPECT_EQ(us, 250);
}

TEST(ParseDurationTest, Sums) {
  ASSERT_OK_AND_ASSIGN(auto a, ParseDuration("1h30m"));
  EXPECT_EQ(a, 90 * kMicrosPerMinute);
  ASSERT_OK_AND_ASSIGN(auto b, ParseDuration("1w2d3h4m5s6ms7us"));
  EXPECT_EQ(b, 9 * kMicrosPerDay + 3 * kMicrosPerHour + 4 * kMicrosPerMinute +
                   5 * kMicrosPerSecond + 6000 + 7);
  // Zero parts are fine as long as the total is not zero.
  ASSERT_OK_AND_ASSIGN(auto c, ParseDuration("0h30m"));
  EXPECT_EQ(c, 30 * kMicrosPerMinute);
  // "m" followed by "s" is minutes then seconds; "ms" is milliseconds.
  ASSERT_OK_AND_ASSIGN(auto d, ParseDuration("1m1s"));
  EXPECT_EQ(d, kMicrosPerMinute + kMicrosPerSecond);
  ASSERT_OK_AND_ASSIGN(auto e, ParseDuration("90m"));
  EXPECT_EQ(e, 90 * kMicrosPerMinute);
  ASSERT_OK_AND_ASSIGN(auto leading_zeros, ParseDuration("007s"));
  EXPECT_EQ(leading_zeros, 7 * kMicrosPerSecond);
}

TEST(ParseDurationTest, LargestValues) {
  // 106751991 days is the most whole days that fit in int64 microseconds.
  ASSERT_OK_AND_ASSIGN(auto days, ParseDuration("106751991d"));
  EXPECT_EQ(days, 106751991 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto weeks, ParseDuration("15250284w"));
  EXPECT_EQ(weeks, 15250284 * 7 * kMicrosPerDay);
  ASSERT_OK_AND_ASSIGN(auto max, ParseDuration("9223372036854775807us"));
  EXPECT_EQ(max, std::numeric_limits<int64_t>::max());
}

struct Refusal {
  std::string text;
  std::string message;
  friend std::ostream& operator<<(std::ostream& os, const Refusal& r) { return os << r.text; }
};

class ParseDurationRefusesTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(ParseDurationRefusesTest, WithMessage) {
  const Refusal& refusal = GetParam();
  auto result = ParseDuration(refusal.text);
  ASSERT_FALSE(result.ok()) << refusal.text << " parsed as " << *result;
  EXPECT_EQ(ErrorCodeOf(result.status()), ErrorCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(),
              HasSubstr("invalid duration \"" + refusal.text + "\""));
  EXPECT_THAT(result.status().message(), HasSubstr(refusal.message)) << refusal.text;
}

INSTANTIATE_TEST_SUITE_P(
    Bad, ParseDurationRefusesTest,
    ::testing::Values(
        Refusal{"", "it is empty; expected units w, d, h, m, s, ms, us"},
        Refusal{"30", "\"30\" has no unit; expected units w, d, h, m, s, ms, us"},
        Refusal{"1h30", "\"30\" has no unit"},
        Refusal{"30x", "unknown unit \"x\" in \"30x\"; expected units w, d, h, m, s, ms, us"},
        Refusal{"1h30min", "unknown unit \"min\" in \"30min\""},
        Refusal{"5H", "unknown unit \"H\""},
        Refusal{"2y", "unknown unit \"y\""},
        Refusal{"h", "expected a number at \"h\""},
        Refusal{"1h 30m", "expected a number at \" 30m\""},
        Refusal{" 1h", "expected a number at \" 1h\""},
        Refusal{"1h ", "expected a number at \" \""},
        Refusal{"-5m", "signs are not allowed"},
        Refusal{"+5m", "signs are not allowed"},
        Refusal{"1.5h", "fractions are not supported"},
        Refusal{"0s", "it is zero"},
        Refusal{"0d0h", "it is zero"},
        Refusal{"106751992d", "too long; durations are limited to about 292,000 years"},
        Refusal{"9223372036854775808us", "too long"},
        Refusal{"99999999999999999999999999w", "too long"},
        Refusal{"9223372036854775807us1us", "too long"},
        Refusal{"15250285w", "too long"}));

TEST(FormatDurationTest, Canonical) {
  EXPECT_EQ(FormatDuration(90 * kMicrosPerMinute), "1h30m");
  EXPECT_EQ(FormatDuration(30 * kMicrosPerDay), "30d");
  EXPECT_EQ(FormatDuration(7 * kMicrosPerDay), "7d");  // no weeks on output
  EXPECT_EQ(FormatDuration(kMicrosPerDay + kMicrosPerSecond), "1d1s");
  EXPECT_EQ(FormatDuration(1500 * 1000), "1s500ms");
  EXPECT_EQ(FormatDuration(250), "250us");
  EXPECT_EQ(FormatDuration(1001), "1ms1us");
  EXPECT_EQ(FormatDuration(45 * kMicrosPerSecond), "45s");
}

TEST(FormatDurationTest, ZeroAndNegative) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(-90 * kMicrosPerMinute), "-1h30m");
  EXPECT_EQ(FormatDuration(std::numeric_limits<int64_t>::min()), "-106751991d4h54s775ms808us");
  EXPECT_EQ(FormatDuration(std::numeric_limits<int64_t>::max()), "106751991d4h54s775ms807us");
}

TEST(DurationRoundTripTest, ParseFormatParse) {
  for (const std::string text : {"1w", "1h30m", "90m", "2d12h", "500ms", "1s500ms", "3600s",
                                 "1d1h1m1s1ms1us", "1000ms", "1000000us"}) {
    ASSERT_OK_AND_ASSIGN(auto micros, ParseDuration(text));
    const std::string canonical = FormatDuration(micros);
    ASSERT_OK_AND_ASSIGN(auto again, ParseDuration(canonical));
    EXPECT_EQ(again, micros) << text << " -> " << canonical;
    EXPECT_EQ(FormatDuration(again), canonical);
  }
  EXPECT_EQ(FormatDuration(*ParseDuration("90m")), "1h30m");
  EXPECT_EQ(FormatDuration(*ParseDuration("1w")), "7d");
  EXPECT_EQ(FormatDuration(*ParseDuration("3600s")), "1h");
}

TEST(DurationRoundTripTest, FormatThenParseOverManyValues) {
  for (int64_t micros = 1; micros > 0 && micros < std::numeric_limits<int64_t>::max() / 3;
       micros = micros * 3 + 7) {
    const std::string text = FormatDuration(micros);
    ASSERT_OK_AND_ASSIGN(auto parsed, ParseDuration(text));
    ASSERT_EQ(parsed, micros) << text;
  }
}

}  // namespace
}  // namespace fstore
