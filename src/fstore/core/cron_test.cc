#include "fstore/core/cron.h"

#include <chrono>
#include <functional>
#include <limits>
#include <ostream>
#include <string>

#include <gmock/gmock.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;

TimestampMicros At(std::string_view text) {
  auto result = ParseTimestamp(text);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ValueOr(0);
}

/// The next run as text, or the error message.
std::string Next(std::string_view expression, std::string_view after) {
  auto schedule = CronSchedule::Parse(expression);
  if (!schedule.ok()) return "parse error: " + schedule.status().message();
  auto next = schedule->NextAfter(At(after));
  if (!next.ok()) return "error: " + next.status().message();
  return FormatTimestamp(*next);
}

struct KnownAnswer {
  std::string expression;
  std::string after;
  std::string next;
  friend std::ostream& operator<<(std::ostream& os, const KnownAnswer& c) {
    return os << '"' << c.expression << "\" after " << c.after;
  }
};

class CronKnownAnswerTest : public ::testing::TestWithParam<KnownAnswer> {};

TEST_P(CronKnownAnswerTest, NextAfter) {
  const KnownAnswer& c = GetParam();
  EXPECT_EQ(Next(c.expression, c.after), c.next) << c.expression << " after " << c.after;
}

INSTANTIATE_TEST_SUITE_P(
    Basics, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"0 */6 * * *", "2024-01-01T05:59:00Z", "2024-01-01T06:00:00Z"},
        // Strictly after: a matching minute itself is skipped.
        KnownAnswer{"0 */6 * * *", "2024-01-01T06:00:00Z", "2024-01-01T12:00:00Z"},
        KnownAnswer{"0 */6 * * *", "2024-01-01T05:59:59.999999Z", "2024-01-01T06:00:00Z"},
        KnownAnswer{"0 */6 * * *", "2024-01-01T18:00:01Z", "2024-01-02T00:00:00Z"},
        KnownAnswer{"* * * * *", "2024-01-01T10:00:00Z", "2024-01-01T10:01:00Z"},
        KnownAnswer{"* * * * *", "2024-01-01T10:00:30.5Z", "2024-01-01T10:01:00Z"},
        KnownAnswer{"* * * * *", "2024-01-01T09:59:59.999999Z", "2024-01-01T10:00:00Z"},
        KnownAnswer{"*/15 * * * *", "2024-01-01T10:07:00Z", "2024-01-01T10:15:00Z"},
        KnownAnswer{"0 9 * * *", "2024-01-01T09:00:00Z", "2024-01-02T09:00:00Z"},
        KnownAnswer{"30 8-10 * * *", "2024-01-01T10:30:00Z", "2024-01-02T08:30:00Z"},
        KnownAnswer{"0,30 9-17 * * *", "2024-01-01T17:15:00Z", "2024-01-01T17:30:00Z"},
        KnownAnswer{"0,30 9-17 * * *", "2024-01-01T17:30:00Z", "2024-01-02T09:00:00Z"},
        KnownAnswer{"1-30/5 * * * *", "2024-01-01T10:26:00Z", "2024-01-01T11:01:00Z"},
        KnownAnswer{"1-30/5 * * * *", "2024-01-01T10:01:00Z", "2024-01-01T10:06:00Z"},
        KnownAnswer{"5/15 * * * *", "2024-01-01T10:50:00Z", "2024-01-01T11:05:00Z"},
        KnownAnswer{"5/15 * * * *", "2024-01-01T10:21:00Z", "2024-01-01T10:35:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    MonthAndYearEnds, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"0 0 * * *", "2024-12-31T23:59:59Z", "2025-01-01T00:00:00Z"},
        KnownAnswer{"30 1 * * *", "2024-12-31T01:30:00Z", "2025-01-01T01:30:00Z"},
        KnownAnswer{"0 0 1 * *", "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z"},
        KnownAnswer{"0 0 1 1 *", "2024-06-15T00:00:00Z", "2025-01-01T00:00:00Z"},
        KnownAnswer{"59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"},
        KnownAnswer{"59 23 31 12 *", "2024-12-31T23:58:59Z", "2024-12-31T23:59:00Z"},
        // Months without a 31st are skipped.
        KnownAnswer{"0 0 31 * *", "2024-01-31T00:00:00Z", "2024-03-31T00:00:00Z"},
        KnownAnswer{"0 0 31 * *", "2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z"},
        KnownAnswer{"0 0 31 * *", "2024-07-31T00:00:00Z", "2024-08-31T00:00:00Z"},
        KnownAnswer{"0 0 30 * *", "2024-01-30T00:00:00Z", "2024-03-30T00:00:00Z"},
        KnownAnswer{"0 12 1 JAN,jul *", "2024-02-01T00:00:00Z", "2024-07-01T12:00:00Z"},
        KnownAnswer{"0 12 1 JAN,jul *", "2024-07-01T12:00:00Z", "2025-01-01T12:00:00Z"},
        KnownAnswer{"0 0 1 */3 *", "2024-04-01T00:00:00Z", "2024-07-01T00:00:00Z"},
        KnownAnswer{"0 0 1 */3 *", "2024-10-01T00:00:00Z", "2025-01-01T00:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    LeapYears, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"0 0 29 2 *", "2024-01-01T00:00:00Z", "2024-02-29T00:00:00Z"},
        KnownAnswer{"0 0 29 2 *", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"},
        KnownAnswer{"0 0 29 2 *", "2023-03-01T00:00:00Z", "2024-02-29T00:00:00Z"},
        // 2100 is not a leap year: eight years to the next Feb 29.
        KnownAnswer{"0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},
        // 2000 is.
        KnownAnswer{"0 0 29 2 *", "1996-03-01T00:00:00Z", "2000-02-29T00:00:00Z"},
        KnownAnswer{"0 0 * 3 *", "2024-02-28T12:00:00Z", "2024-03-01T00:00:00Z"},
        KnownAnswer{"0 12 * * *", "2024-02-28T12:00:00Z", "2024-02-29T12:00:00Z"},
        KnownAnswer{"0 12 * * *", "2023-02-28T12:00:00Z", "2023-03-01T12:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    DaysOfWeek, CronKnownAnswerTest,
    ::testing::Values(
        // 2024-01-01 is a Monday.
        KnownAnswer{"0 12 * * MON-FRI", "2024-01-05T12:00:00Z", "2024-01-08T12:00:00Z"},
        KnownAnswer{"0 12 * * mon-fri", "2024-01-06T00:00:00Z", "2024-01-08T12:00:00Z"},
        KnownAnswer{"0 0 * * 0", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
        KnownAnswer{"0 0 * * 7", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
        KnownAnswer{"0 0 * * SUN", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
        KnownAnswer{"0 0 * * 5-7", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"},
        KnownAnswer{"0 0 * * 5-7", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z"},
        KnownAnswer{"0 0 * * 5-7", "2024-01-07T00:00:00Z", "2024-01-12T00:00:00Z"},
        KnownAnswer{"0 0 * * */2", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"},
        KnownAnswer{"0 0 * * 1", "2024-12-30T00:00:00Z", "2025-01-06T00:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    DayOfMonthOrDayOfWeek, CronKnownAnswerTest,
    ::testing::Values(
        // Both restricted: the 13th OR any Friday.
        KnownAnswer{"0 0 13 * 5", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"},
        KnownAnswer{"0 0 13 * FRI", "2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z"},
        KnownAnswer{"0 0 13 * FRI", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z"},
        KnownAnswer{"0 0 13 * FRI", "2024-09-12T00:00:00Z", "2024-09-13T00:00:00Z"},
        // Only day-of-month restricted: the 13th.
        KnownAnswer{"0 0 13 * *", "2024-01-05T00:00:00Z", "2024-01-13T00:00:00Z"},
        // Only day-of-week restricted: Fridays.
        KnownAnswer{"0 0 * * 5", "2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z"},
        // A day field starting with '*' counts as unrestricted (Vixie): odd
        // days AND Mondays. Jan 1 is excluded (strictly after), Jan 8 is even.
        KnownAnswer{"0 0 */2 * 1", "2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z"},
        // Feb 30 never exists, but Mondays in February do.
        KnownAnswer{"0 0 30 2 1", "2024-01-01T00:00:00Z", "2024-02-05T00:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    Macros, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"@hourly", "2024-01-01T10:30:00Z", "2024-01-01T11:00:00Z"},
        KnownAnswer{"@daily", "2024-01-01T10:30:00Z", "2024-01-02T00:00:00Z"},
        KnownAnswer{"@midnight", "2024-01-01T10:30:00Z", "2024-01-02T00:00:00Z"},
        KnownAnswer{"@weekly", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
        KnownAnswer{"@monthly", "2024-01-31T00:00:00Z", "2024-02-01T00:00:00Z"},
        KnownAnswer{"@yearly", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
        KnownAnswer{"@ANNUALLY", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"},
        KnownAnswer{"  @daily  ", "2024-01-01T10:30:00Z", "2024-01-02T00:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    BeforeTheEpoch, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"0 0 1 * *", "1969-12-15T00:00:00Z", "1970-01-01T00:00:00Z"},
        KnownAnswer{"*/15 * * * *", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z"},
        KnownAnswer{"0 0 * * *", "1969-07-20T20:17:40Z", "1969-07-21T00:00:00Z"},
        KnownAnswer{"0 0 29 2 *", "1899-01-01T00:00:00Z", "1904-02-29T00:00:00Z"}));

INSTANTIATE_TEST_SUITE_P(
    Whitespace, CronKnownAnswerTest,
    ::testing::Values(
        KnownAnswer{"  0  */6\t* *   *  ", "2024-01-01T05:59:00Z", "2024-01-01T06:00:00Z"}));

TEST(CronScheduleTest, KeepsTheExpressionAsGiven) {
  ASSERT_OK_AND_ASSIGN(auto schedule, CronSchedule::Parse(" 0 */6 * * * "));
  EXPECT_EQ(schedule.expression(), " 0 */6 * * * ");
  ASSERT_OK_AND_ASSIGN(auto macro, CronSchedule::Parse("@daily"));
  EXPECT_EQ(macro.expression(), "@daily");
}

TEST(CronScheduleTest, ConsecutiveRunsOfEveryMinute) {
  ASSERT_OK_AND_ASSIGN(auto schedule, CronSchedule::Parse("* * * * *"));
  TimestampMicros t = At("2024-12-31T23:50:00Z");
  for (int i = 1; i <= 20; ++i) {
    ASSERT_OK_AND_ASSIGN(t, schedule.NextAfter(t));
    EXPECT_EQ(t, At("2024-12-31T23:50:00Z") + i * kMicrosPerMinute);
  }
}

TEST(CronScheduleTest, NeverFiringSchedulesFail) {
  for (const char* expression : {"0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *"}) {
    ASSERT_OK_AND_ASSIGN(auto schedule, CronSchedule::Parse(expression));
    auto next = schedule.NextAfter(At("2024-01-01T00:00:00Z"));
    ASSERT_FALSE(next.ok()) << expression << " fired at " << FormatTimestamp(*next);
    EXPECT_EQ(ErrorCodeOf(next.status()), ErrorCode::kInvalidArgument);
    EXPECT_THAT(next.status().message(), HasSubstr("never fires"));
    EXPECT_THAT(next.status().message(), HasSubstr(expression));
  }
}

TEST(CronScheduleTest, FarFutureAndPast) {
  ASSERT_OK_AND_ASSIGN(auto schedule, CronSchedule::Parse("0 0 29 2 *"));
  ASSERT_OK_AND_ASSIGN(auto far, schedule.NextAfter(At("9999-03-01T00:00:00Z")));
  EXPECT_EQ(FormatTimestamp(far), "+10000-02-29T00:00:00Z");
  ASSERT_OK_AND_ASSIGN(auto every_minute, CronSchedule::Parse("* * * * *"));
  auto beyond = every_minute.NextAfter(std::numeric_limits<int64_t>::max() - 1);
  ASSERT_FALSE(beyond.ok());
  EXPECT_THAT(beyond.status().message(), HasSubstr("beyond the largest representable time"));
  ASSERT_OK_AND_ASSIGN(auto past, every_minute.NextAfter(-kMicrosPerDay * 365 * 100000));
  EXPECT_EQ(past, -kMicrosPerDay * 365 * 100000 + kMicrosPerMinute);
}

/// Checks NextAfter against a minute-by-minute scan with an independent
/// predicate, from several starting points.
void ExpectMatchesBruteForce(
    std::string_view expression,
    const std::function<bool(const std::chrono::year_month_day&, unsigned weekday, int hour,
                             int minute)>& matches,
    int64_t max_minutes) {
  namespace chr = std::chrono;
  ASSERT_OK_AND_ASSIGN(auto schedule, CronSchedule::Parse(expression));
  for (const char* start : {"2023-12-30T22:17:00Z", "2024-02-27T00:00:00Z", "1999-12-31T23:00:00Z",
                            "2099-12-25T13:13:13Z"}) {
    const TimestampMicros after = At(start);
    ASSERT_OK_AND_ASSIGN(auto next, schedule.NextAfter(after));
    TimestampMicros expected = -1;
    for (int64_t i = 1; i <= max_minutes; ++i) {
      const TimestampMicros t = after - after % kMicrosPerMinute + i * kMicrosPerMinute;
      const chr::sys_days day = chr::floor<chr::days>(chr::sys_time<chr::microseconds>(
          chr::microseconds(t)));
      const int64_t minute_of_day = (t - day.time_since_epoch().count() * kMicrosPerDay) /
                                    kMicrosPerMinute;
      if (matches(chr::year_month_day(day), chr::weekday(day).c_encoding(),
                  static_cast<int>(minute_of_day / 60), static_cast<int>(minute_of_day % 60))) {
        expected = t;
        break;
      }
    }
    EXPECT_EQ(FormatTimestamp(next), FormatTimestamp(expected)) << expression << " after " << start;
  }
}

TEST(CronScheduleTest, AgreesWithBruteForce) {
  using YMD = std::chrono::year_month_day;
  constexpr int64_t kTwoYears = 2 * 366 * 24 * 60;
  ExpectMatchesBruteForce(
      "*/7 1-3,22 * * *",
      [](const YMD&, unsigned, int h, int m) {
        return m % 7 == 0 && ((h >= 1 && h <= 3) || h == 22);
      },
      kTwoYears);
  ExpectMatchesBruteForce(
      "15 10 1,15,31 * 2",
      [](const YMD& d, unsigned wd, int h, int m) {
        const unsigned day = static_cast<unsigned>(d.day());
        return h == 10 && m == 15 && (day == 1 || day == 15 || day == 31 || wd == 2);
      },
      kTwoYears);
  ExpectMatchesBruteForce(
      "0 0 29 2 *",
      [](const YMD& d, unsigned, int h, int m) {
        return h == 0 && m == 0 && d.month() == std::chrono::February &&
               d.day() == std::chrono::day{29};
      },
      5 * 366 * 24 * 60);
  ExpectMatchesBruteForce(
      "59 23 * FEB-MAR sat,sun",
      [](const YMD& d, unsigned wd, int h, int m) {
        const unsigned month = static_cast<unsigned>(d.month());
        return h == 23 && m == 59 && (month == 2 || month == 3) && (wd == 6 || wd == 0);
      },
      kTwoYears);
}

struct ParseError {
  std::string expression;
  std::string message;
  friend std::ostream& operator<<(std::ostream& os, const ParseError& c) {
    return os << '"' << c.expression << '"';
  }
};

class CronParseErrorTest : public ::testing::TestWithParam<ParseError> {};

TEST_P(CronParseErrorTest, NamesFieldValueAndRange) {
  const ParseError& c = GetParam();
  auto result = CronSchedule::Parse(c.expression);
  ASSERT_FALSE(result.ok()) << c.expression;
  EXPECT_EQ(ErrorCodeOf(result.status()), ErrorCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr(c.message)) << c.expression;
}

INSTANTIATE_TEST_SUITE_P(
    Ranges, CronParseErrorTest,
    ::testing::Values(
        ParseError{"0 24 * * *", "hour: 24 is out of range 0-23"},
        ParseError{"60 * * * *", "minute: 60 is out of range 0-59"},
        ParseError{"* * 0 * *", "day-of-month: 0 is out of range 1-31"},
        ParseError{"* * 32 * *", "day-of-month: 32 is out of range 1-31"},
        ParseError{"* * * 0 *", "month: 0 is out of range 1-12"},
        ParseError{"* * * 13 *", "month: 13 is out of range 1-12"},
        ParseError{"* * * * 8", "day-of-week: 8 is out of range 0-7"},
        ParseError{"0 1-24 * * *", "hour: 24 is out of range 0-23"},
        ParseError{"0 1,2,99 * * *", "hour: 99 is out of range 0-23"},
        ParseError{"0 24 * * *", "in cron expression \"0 24 * * *\""}));

INSTANTIATE_TEST_SUITE_P(
    Syntax, CronParseErrorTest,
    ::testing::Values(
        ParseError{"* * * FOO *", "month: \"FOO\" is not a number 1-12 or a name JAN-DEC"},
        ParseError{"* * * * MONDAY", "day-of-week: \"MONDAY\" is not a number 0-7 or a name SUN-SAT"},
        ParseError{"a * * * *", "minute: \"a\" is not a number 0-59"},
        ParseError{"* MON * * *", "hour: \"MON\" is not a number 0-23"},
        ParseError{"* * * JAN-MON *", "month: \"MON\" is not"},
        ParseError{"*/0 * * * *", "minute: step 0 in \"*/0\" is out of range 1-59"},
        ParseError{"*/60 * * * *", "minute: step 60 in \"*/60\" is out of range 1-59"},
        ParseError{"*/x * * * *", "minute: step \"x\" in \"*/x\" is not a number"},
        ParseError{"*/ * * * *", "minute: step \"\" in \"*/\" is not a number"},
        ParseError{"5-1 * * * *", "minute: range \"5-1\" is reversed"},
        ParseError{"* * * DEC-JAN *", "month: range \"DEC-JAN\" is reversed"},
        ParseError{"1,,2 * * * *", "minute: empty list item in \"1,,2\""},
        ParseError{"1, * * * *", "minute: empty list item"},
        ParseError{"- * * * *", "minute: a value is missing; expected a number 0-59"},
        ParseError{"1- * * * *", "minute: a value is missing"},
        ParseError{"-5 * * * *", "minute: a value is missing"},
        ParseError{"1.5 * * * *", "minute: \"1.5\" is not a number 0-59"},
        ParseError{"99999999999 * * * *", "minute: \"99999999999\" is not a number 0-59"}));

INSTANTIATE_TEST_SUITE_P(
    FieldCount, CronParseErrorTest,
    ::testing::Values(
        ParseError{"* * * *", "has 4 fields; expected 5 fields: minute hour day-of-month month "
                              "day-of-week"},
        ParseError{"* * * * * *", "has 6 fields; expected 5 fields"},
        ParseError{"0 0 * * * 2024", "has 6 fields; expected 5 fields"},
        ParseError{"", "has 0 fields; expected 5 fields"},
        ParseError{"   ", "has 0 fields; expected 5 fields"},
        ParseError{"*", "has 1 field; expected 5 fields"},
        ParseError{"@reboot", "unknown cron macro \"@reboot\""},
        ParseError{"@every 5m", "unknown cron macro \"@every 5m\"; expected one of @yearly"},
        ParseError{"@", "unknown cron macro"}));

}  // namespace
}  // namespace fstore
