#include "fstore/compute/internal/pg_datetime.h"

#include <gtest/gtest.h>

#include "fstore/core/time.h"

namespace fstore::pg {
namespace {

int64_t At(const char* text) { return ParseTimestamp(text).ValueOrDie(); }

TEST(PgDateTimeTest, ParseInterval) {
  std::string error;
  auto check = [&](const char* text, int64_t months, int64_t days, int64_t micros) {
    auto v = ParseInterval(text, &error);
    ASSERT_TRUE(v.has_value()) << text << ": " << error;
    EXPECT_EQ(v->months, months) << text;
    EXPECT_EQ(v->days, days) << text;
    EXPECT_EQ(v->micros, micros) << text;
  };
  check("30 days", 0, 30, 0);
  check("1 year 2 mons 3 days 04:05:06", 14, 3, 4 * kMicrosPerHour + 5 * kMicrosPerMinute + 6 * kMicrosPerSecond);
  check("-1 day +02:00:00", 0, -1, 2 * kMicrosPerHour);
  check("1.5 days", 0, 1, 12 * kMicrosPerHour);
  check("1.5 years", 18, 0, 0);
  check("2 weeks ago", 0, -14, 0);
  check("90 minutes", 0, 0, 90 * kMicrosPerMinute);
  check("@ 1 hour", 0, 0, kMicrosPerHour);
  check("10", 0, 0, 10 * kMicrosPerSecond);
  check("01:30", 0, 0, 90 * kMicrosPerMinute);
  EXPECT_FALSE(ParseInterval("1 fortnight", &error));
  EXPECT_FALSE(ParseInterval("", &error));
  EXPECT_FALSE(ParseInterval("abc", &error));
}

TEST(PgDateTimeTest, FormatInterval) {
  EXPECT_EQ(FormatInterval({14, 3, 4 * kMicrosPerHour + 500000}), "1 year 2 mons 3 days 04:00:00.5");
  EXPECT_EQ(FormatInterval({0, -1, 2 * kMicrosPerHour}), "-1 days +02:00:00");
  EXPECT_EQ(FormatInterval({0, 0, 0}), "00:00:00");
  EXPECT_EQ(FormatInterval({1, 1, 0}), "1 mon 1 day");
  EXPECT_EQ(FormatInterval({0, 0, -kMicrosPerMinute}), "-00:01:00");
}

TEST(PgDateTimeTest, AddIntervalClampsToMonthEnd) {
  EXPECT_EQ(*AddInterval(At("2024-01-31"), {1, 0, 0}), At("2024-02-29"));
  EXPECT_EQ(*AddInterval(At("2024-03-31"), {-1, 0, 0}), At("2024-02-29"));
  EXPECT_EQ(*AddInterval(At("2024-02-29"), {12, 0, 0}), At("2025-02-28"));
  EXPECT_EQ(*AddInterval(At("1969-12-31T23:00:00"), {0, 1, kMicrosPerHour}), At("1970-01-02"));
}

TEST(PgDateTimeTest, AgeIsPostgresSymbolicDifference) {
  Interval a = Age(At("2024-01-01"), At("1990-06-15"));
  EXPECT_EQ(a.months, 33 * 12 + 6);
  EXPECT_EQ(a.days, 16);  // PostgreSQL 15: 33 years 6 mons 16 days
  EXPECT_EQ(a.micros, 0);
  Interval b = Age(At("1990-06-15"), At("2024-01-01"));
  EXPECT_EQ(b.months, -(33 * 12 + 6));
  EXPECT_EQ(b.days, -16);  // PostgreSQL 15: -33 years -6 mons -16 days
  Interval c = Age(At("2024-03-01T01:00:00"), At("2024-02-29T02:00:00"));
  EXPECT_EQ(c.months, 0);
  EXPECT_EQ(c.days, 0);
  EXPECT_EQ(c.micros, 23 * kMicrosPerHour);
}

TEST(PgDateTimeTest, FormatTimestampAndParseBool) {
  EXPECT_EQ(FormatTimestampText(At("2024-02-29T10:30:00.25"), true), "2024-02-29 10:30:00.25+00");
  EXPECT_EQ(FormatTimestampText(At("1969-12-31T23:59:59"), false), "1969-12-31 23:59:59");
  EXPECT_EQ(ParseBool(" TRUE "), true);
  EXPECT_EQ(ParseBool("of"), false);
  EXPECT_EQ(ParseBool("ye"), true);
  EXPECT_EQ(ParseBool("o"), std::nullopt);
  EXPECT_EQ(ParseBool("2"), std::nullopt);
}

}  // namespace
}  // namespace fstore::pg
