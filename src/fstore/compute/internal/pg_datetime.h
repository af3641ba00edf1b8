#pragma once

// PostgreSQL's calendar arithmetic on UTC microseconds, for the expression
// evaluator: Arrow compute has no kernel for timestamp + month/day interval,
// age(), interval fields or PostgreSQL's text forms, so these are done row by
// row with the algorithms of PostgreSQL's timestamp.c / datetime.c.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fstore::pg {

/// PostgreSQL's interval: months, days and microseconds, kept apart (a month is
/// not a fixed number of days, nor a day of hours across DST).
struct Interval {
  int64_t months = 0;
  int64_t days = 0;
  int64_t micros = 0;
};

/// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t year, int month, int day);

/// A timestamp broken into fields (UTC), as PostgreSQL's timestamp2tm.
struct DateTimeFields {
  int64_t year = 1970;
  int month = 1;  ///< 1..12
  int day = 1;    ///< 1..31
  int hour = 0;
  int minute = 0;
  int second = 0;
  int micros = 0;  ///< 0..999999
};
DateTimeFields SplitTimestamp(int64_t micros);
int64_t JoinTimestamp(const DateTimeFields& f);

int DaysInMonth(int64_t year, int month);

/// timestamp + interval (PostgreSQL's timestamp_pl_interval: months first,
/// clamping the day to the month's end, then days, then microseconds).
/// Returns nullopt on overflow.
std::optional<int64_t> AddInterval(int64_t micros, const Interval& interval);

/// age(a, b): PostgreSQL's timestamp_age, a symbolic difference in years,
/// months, days and time, borrowing from the larger fields.
Interval Age(int64_t a, int64_t b);

/// The interval's length with a month as 30 days, a day as 24 hours (the key
/// PostgreSQL compares intervals by), in microseconds.
int64_t IntervalSpanMicros(const Interval& interval);

/// interval * factor (PostgreSQL's interval_mul: fractional months spill into
/// days, fractional days into time).
std::optional<Interval> MultiplyInterval(const Interval& interval, double factor);

/// Parses PostgreSQL's interval input: "30 days", "1 year 2 mons", "-1 day
/// +02:00:00", "1.5 hours", "2 weeks ago", "01:30:00", "@ 1 day". Returns an
/// error message on failure.
std::optional<Interval> ParseInterval(std::string_view text, std::string* error);

/// PostgreSQL's interval output (IntervalStyle postgres): "1 year 2 mons 3 days
/// 04:05:06".
std::string FormatInterval(const Interval& interval);

/// PostgreSQL's timestamp output (DateStyle ISO): "2024-01-01 10:00:00[.5]",
/// with "+00" appended for timestamptz.
std::string FormatTimestampText(int64_t micros, bool with_zone);

/// PostgreSQL's boolean input: t/true/yes/on/1, f/false/no/off/0 (any case,
/// unique prefixes, surrounding spaces).
std::optional<bool> ParseBool(std::string_view text);

}  // namespace fstore::pg
